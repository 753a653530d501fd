"""What ingesting a source would add, from the catalog and the source's bytes alone (no reader,
no Prefect): ingest records on each raw version it makes the content hash of the source it read
(`source_sha256`) and of the ingest settings it read it with (`ingest_config_sha256`). The same
bytes read with the same settings give the same rows, all of them already in that version or in
the earlier ones it was checked against, so a second run adds nothing; when the first one
quarantined nothing, it also quarantines nothing and gates nothing. `llm4all pipeline` answers
"nothing to do" from it (`tasks/pending.py`) without starting a flow run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.ingest.config import IngestConfig
from warehouse import Catalog, DatasetRef, VersionInfo


@dataclass
class IngestResult:
    dataset: str
    source: str
    run_id: str | None  # None when the source was known unchanged and not read (`unchanged`)
    ref: DatasetRef | None  # None when the run added no new content
    rows_in: int
    accepted: int
    already_present: int
    quarantined: int
    blank_lines: int
    seconds: float
    quarantine_examples: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ref"] = self.ref.to_dict() if self.ref else None
        return d


def resolve_source(source: str) -> str:
    """The source as ingest records it: an absolute path, or `hf:NAME` as given."""
    return source if source.startswith("hf:") else str(Path(source).resolve())


def source_sha256(source: str) -> str | None:
    """SHA-256 of a source's bytes: a file's, or a folder's (every file below it: relative
    path and content, in path order). None for `hf:NAME` (no bytes here) and for a path that
    is missing or cannot be read."""
    if source.startswith("hf:"):
        return None
    path = Path(source)
    try:
        if path.is_file():
            return _file_sha256(path)
        if not path.is_dir():
            return None
        digest = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{f.relative_to(path).as_posix()}\0{_file_sha256(f)}\n".encode())
        return digest.hexdigest()
    except OSError:
        return None


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def config_sha256(cfg: IngestConfig) -> str:
    """The ingest settings a source is read with (every field: what a row is, which are
    quarantined), as 16 hex digits."""
    payload = json.dumps(cfg.model_dump(), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def unchanged(
    catalog: Catalog, dataset: str, source: str, cfg: IngestConfig
) -> dict[str, Any] | None:
    """The result an ingest of `source` into `dataset` would return (the shape `ingest_flow`
    returns: nothing new, no gate), or None when it might add, quarantine or gate something.

    Unchanged: no raw version of the dataset waits for its gate, and one that passed it was
    made from these bytes, read with these settings, quarantining nothing. A rerun then reads
    the same rows, all already present."""
    digest = source_sha256(source)
    versions = catalog.versions("raw", dataset)
    if digest is None or any(v.gate_passed is None for v in versions):
        return None
    want = config_sha256(cfg)
    same = [v for v in versions if v.gate_passed and _made_from(v, digest, want)]
    runs = {r["run_id"]: r for r in catalog.ingest_runs(dataset)} if same else {}
    run = runs.get(same[-1].meta.get("run_id")) if same else None
    if run is None:
        return None
    rows = int(run["rows_in"])
    result = IngestResult(
        dataset, resolve_source(source), None, None, rows, 0, rows, 0, int(run["blank_lines"]),
        0.0, [],
    )  # fmt: skip
    return result.to_dict() | {"gate": None, "unchanged_since": same[-1].ref.key}


def _made_from(v: VersionInfo, digest: str, config: str) -> bool:
    meta = v.meta
    return (
        meta.get("source_sha256") == digest
        and meta.get("ingest_config_sha256") == config
        and meta.get("quarantined") == 0
    )
