"""Versioned Parquet lake + DuckDB catalog. Imports nothing else of ours.

Names are imported on first use (PEP 562), so `from warehouse.arrow import ...` or
`warehouse.resolve_home` do not load DuckDB: fast commands stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Catalog": "warehouse.catalog",
    "CatalogBusy": "warehouse.catalog",
    "CatalogError": "warehouse.catalog",
    "StagedSnapshot": "warehouse.catalog",
    "Transaction": "warehouse.catalog",
    "resolve_home": "warehouse.home",
    "WarehouseBusy": "warehouse.lock",
    "InvalidName": "warehouse.names",
    "validate_name": "warehouse.names",
    "validate_stage": "warehouse.names",
    "DatasetRef": "warehouse.refs",
    "VersionInfo": "warehouse.refs",
}

__all__ = [
    "Catalog",
    "CatalogBusy",
    "CatalogError",
    "DatasetRef",
    "InvalidName",
    "StagedSnapshot",
    "Transaction",
    "VersionInfo",
    "WarehouseBusy",
    "resolve_home",
    "validate_name",
    "validate_stage",
]

if TYPE_CHECKING:
    from warehouse.catalog import Catalog, CatalogBusy, CatalogError, StagedSnapshot, Transaction
    from warehouse.home import resolve_home
    from warehouse.lock import WarehouseBusy
    from warehouse.names import InvalidName, validate_name, validate_stage
    from warehouse.refs import DatasetRef, VersionInfo


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'warehouse' has no attribute {name!r}")
