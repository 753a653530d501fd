"""The model registry: trained models as versioned folders, recorded in the catalog.

    <home>/models/<name>/v=<n>/     a `save_pretrained` folder (config, safetensors, tokenizer)

A model is registered like a snapshot is published: its folder (written and fsynced elsewhere
on the same filesystem) is renamed to `v=<n>` inside one catalog transaction that inserts its
row, with its lineage (teacher, tokens snapshots, logit caches, config hash) and metrics.
After its gate, the newest version of a name that passed is the one `promoted`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.catalog import Catalog, CatalogError
from warehouse.names import validate_name

_COLUMNS = (
    "name, version, path, parent, teacher, tokens, logits, config_hash, created_at, "
    "flow_run_id, metrics, gate_passed, promoted"
)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    path: str
    parent: str | None
    teacher: str
    tokens: list[str]
    logits: list[str]
    config_hash: str
    created_at: datetime
    flow_run_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    gate_passed: bool | None = None
    promoted: bool = False

    @property
    def key(self) -> str:
        return f"models/{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["key"] = self.key
        d["created_at"] = self.created_at.isoformat()
        return d


def models_dir(catalog: Catalog) -> Path:
    return catalog.home / "models"


def register_model(
    catalog: Catalog,
    name: str,
    folder: Path,
    *,
    teacher: str,
    tokens: list[str],
    logits: list[str],
    config_hash: str,
    metrics: dict[str, Any],
    parent: str | None = None,
    flow_run_id: str | None = None,
) -> ModelInfo:
    """Move `folder` (a saved model, on the home's filesystem) into the registry as a new
    version of `name`; the rename and the row commit together or not at all."""
    validate_name(name)
    if not (folder / "config.json").exists():
        raise CatalogError(f"{folder} is not a saved model (no config.json)")
    with catalog.writing(), catalog.transaction() as tx:
        ((last,),) = tx.execute(
            "SELECT coalesce(max(version), 0) FROM models WHERE name = ?", [name]
        ).fetchall()
        version = int(last) + 1
        target = models_dir(catalog) / name / f"v={version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, target)  # fails if the target exists: never overwrite a model
        tx._renames.append((target, folder))  # undone if the insert fails
        info = ModelInfo(
            name, version, str(target), parent, teacher, list(tokens), list(logits),
            config_hash, datetime.now(UTC).replace(tzinfo=None), flow_run_id, metrics,
        )  # fmt: skip
        tx.execute(
            f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, false)",
            [
                name,
                version,
                str(target.relative_to(catalog.home)),
                parent,
                teacher,
                json.dumps(info.tokens),
                json.dumps(info.logits),
                config_hash,
                info.created_at,
                flow_run_id,
                json.dumps(metrics, default=float),
            ],
        )
    return info


def list_models(catalog: Catalog, name: str | None = None) -> list[ModelInfo]:
    sql = f"SELECT {_COLUMNS} FROM models"
    params: list[Any] = []
    if name is not None:
        sql += " WHERE name = ?"
        params.append(name)
    sql += " ORDER BY name, version"
    try:
        rows = catalog._query(sql, params)
    except duckdb.CatalogException:  # a catalog made before the registry existed
        return []
    return [_info(catalog.home, r) for r in rows]


def get_model(catalog: Catalog, name: str, version: int | None = None) -> ModelInfo:
    rows = [m for m in list_models(catalog, name) if version is None or m.version == version]
    if not rows:
        raise CatalogError(f"no model {name}" + (f"@{version}" if version else "") + " registered")
    return rows[-1]


def set_model_gate(
    catalog: Catalog, name: str, version: int, passed: bool, report: dict[str, Any] | None
) -> None:
    """Record the gate; a pass promotes this version if it is the newest that passed."""
    with catalog.writing(), catalog.transaction() as tx:
        tx.execute(
            "UPDATE models SET gate_passed = ?, gate_report = ? WHERE name = ? AND version = ?",
            [passed, json.dumps(report) if report else None, name, version],
        )
        tx.execute(
            "UPDATE models SET promoted = coalesce(version = (SELECT max(version) FROM models "
            "WHERE name = ? AND gate_passed), false) WHERE name = ?",
            [name, name],
        )


def _info(home: Path, r: tuple[Any, ...]) -> ModelInfo:
    (
        name,
        version,
        path,
        parent,
        teacher,
        tokens,
        logits,
        chash,
        created,
        run,
        metrics,
        gate,
        prom,
    ) = r
    return ModelInfo(
        name, int(version), str(home / path), parent, teacher, json.loads(tokens),
        json.loads(logits), chash, created, run, json.loads(metrics) if metrics else {},
        gate, bool(prom),
    )  # fmt: skip
