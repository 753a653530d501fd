"""The model registry: trained models as versioned folders, recorded in the catalog.

    <home>/models/<name>/v=<n>/     a `save_pretrained` folder (config, safetensors, tokenizer)

A model is registered like a snapshot is published: its folder (written elsewhere on the same
filesystem) is fsynced, then renamed to `v=<n>` inside one catalog transaction that inserts its
row, with its lineage (teacher, tokens snapshots, logit caches, config hash), metrics, and —
when the caller gated it first — its gate outcome and promotion, so a crash leaves either no
version or a complete, gated one. A folder renamed into place whose transaction never committed
is moved to `trash/` by the next writer (`Catalog._recover`).

Promotion: a version that passes its gate becomes the promoted one of its name if it is newer
than the promoted one and, when `requires_promoted` is given (a refresh continuing a version),
only if that version is still the promoted one — a child of a stale parent never replaces a
newer model. A version that fails is never promoted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.catalog import Catalog, CatalogError, Transaction
from warehouse.files import fsync_path, fsync_tree
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
    gate_passed: bool | None = None,
    gate_report: dict[str, Any] | None = None,
    requires_promoted: str | None = None,
    expect_version: int | None = None,
) -> ModelInfo:
    """Move `folder` (a saved model, on the home's filesystem) into the registry as a new
    version of `name`, with its gate outcome (None: not gated yet) and the promotion it earns;
    the rename and the row commit together or not at all. `expect_version`: the version the
    caller gated under this writer lock (a mismatch is an error, not a silent renumbering)."""
    validate_name(name)
    if not (folder / "config.json").exists():
        raise CatalogError(f"{folder} is not a saved model (no config.json)")
    with catalog.writing():
        fsync_tree(folder)  # the bytes are on disk before the rename makes them a version
        with catalog.transaction() as tx:
            version = next_version(catalog, name, tx)
            if expect_version is not None and version != expect_version:
                raise CatalogError(f"expected to register {name}@{expect_version}, not @{version}")
            target = models_dir(catalog) / name / f"v={version}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, target)  # fails if the target exists: never overwrite a model
            tx._renames.append((target, folder))  # undone if the insert fails
            fsync_path(target.parent)
            info = ModelInfo(
                name, version, str(target), parent, teacher, list(tokens), list(logits),
                config_hash, datetime.now(UTC).replace(tzinfo=None), flow_run_id, metrics,
            )  # fmt: skip
            tx.execute(
                f"INSERT INTO models ({_COLUMNS}, gate_report) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, false, NULL)",
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
            if gate_passed is not None:
                _set_gate(tx, name, version, gate_passed, gate_report, requires_promoted)
    return get_model(catalog, name, version)


def next_version(catalog: Catalog, name: str, tx: Transaction | None = None) -> int:
    """The version the next registration of `name` gets (stable while the writer lock is
    held)."""
    sql, params = "SELECT coalesce(max(version), 0) FROM models WHERE name = ?", [name]
    if tx is not None:
        ((last,),) = tx.execute(sql, params).fetchall()
    else:
        rows = catalog._query(sql, params)
        last = rows[0][0] if rows else 0
    return int(last) + 1


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
    catalog: Catalog,
    name: str,
    version: int,
    passed: bool,
    report: dict[str, Any] | None,
    *,
    requires_promoted: str | None = None,
) -> None:
    """Record the gate of a registered version and the promotion it earns (see the module
    docstring)."""
    with catalog.writing(), catalog.transaction() as tx:
        _set_gate(tx, name, version, passed, report, requires_promoted)


def _set_gate(
    tx: Transaction,
    name: str,
    version: int,
    passed: bool,
    report: dict[str, Any] | None,
    requires_promoted: str | None,
) -> None:
    tx.execute(
        "UPDATE models SET gate_passed = ?, gate_report = ? WHERE name = ? AND version = ?",
        [passed, json.dumps(report, default=str) if report else None, name, version],
    )
    rows = tx.execute("SELECT version FROM models WHERE name = ? AND promoted", [name]).fetchall()
    current = int(rows[0][0]) if rows else None
    if passed:
        still = requires_promoted is None or requires_promoted == (
            f"models/{name}@{current}" if current is not None else None
        )
        if still and (current is None or version > current):
            tx.execute("UPDATE models SET promoted = (version = ?) WHERE name = ?", [version, name])
        elif not still:  # passed, but what it continued is no longer the promoted version
            note = {
                "not_promoted": f"its parent {requires_promoted} is no longer the promoted "
                f"version (models/{name}@{current} is)"
            }
            tx.execute(
                "UPDATE models SET gate_report = ? WHERE name = ? AND version = ?",
                [json.dumps(note), name, version],
            )
    elif current == version:  # a promoted version that now fails: fall back to the newest pass
        tx.execute(
            "UPDATE models SET promoted = coalesce(version = (SELECT max(version) FROM models "
            "WHERE name = ? AND gate_passed), false) WHERE name = ?",
            [name, name],
        )


def promoted_version(catalog: Catalog, name: str) -> ModelInfo | None:
    """The promoted version of `name`, if any."""
    current = [m for m in list_models(catalog, name) if m.promoted]
    return current[-1] if current else None


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
