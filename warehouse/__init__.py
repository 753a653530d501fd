"""Versioned Parquet lake + DuckDB catalog. Imports nothing else of ours."""

from warehouse.catalog import Catalog, CatalogBusy, CatalogError, StagedSnapshot, Transaction
from warehouse.home import resolve_home
from warehouse.lock import WarehouseBusy
from warehouse.names import InvalidName, validate_name, validate_stage
from warehouse.refs import DatasetRef, VersionInfo

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
