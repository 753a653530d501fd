"""`DatasetRef`: what tasks pass to each other instead of data."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class DatasetRef:
    """One committed, immutable snapshot: `<home>/lake/<stage>/<name>/v=<version>/`.

    Snapshots are deltas: version n holds the rows added by the run that created it, and the
    dataset as of version n is the union of versions 1..n (see `Catalog.snapshot_paths`).
    """

    stage: str
    name: str
    version: int
    path: str
    rows: int
    sha256: str

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.name}@{self.version}"

    def files(self) -> list[Path]:
        return sorted(Path(self.path).glob("*.parquet"))

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The snapshot as one Arrow table (for small snapshots and tests; stream big ones).

        `partitioning=None`: the `v=<n>` folder must not turn into a column.
        """
        import pyarrow.parquet as pq

        return pq.read_table(self.files(), columns=columns, partitioning=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetRef:
        return cls(**{k: d[k] for k in ("stage", "name", "version", "path", "rows", "sha256")})


@dataclass(frozen=True)
class VersionInfo:
    """A catalog row: a `DatasetRef` plus its lineage and gate state."""

    ref: DatasetRef
    parent: str | None
    created_at: datetime
    flow_run_id: str | None
    gate_passed: bool | None  # None: not validated yet (nothing downstream reads it)
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ref.to_dict(),
            "key": self.ref.key,
            "parent": self.parent,
            "created_at": self.created_at.isoformat(),
            "flow_run_id": self.flow_run_id,
            "gate_passed": self.gate_passed,
            "meta": self.meta,
        }


def sha256_of_files(files: list[Path], root: Path | None = None, chunk: int = 1 << 20) -> str:
    """Digest of a snapshot's files in path order, their paths (relative to `root`, else
    their names) included, so that a rename shows."""
    h = hashlib.sha256()
    for f in sorted(files):
        name = str(f.relative_to(root)) if root else f.name
        h.update(name.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()
