"""What every dedup step shares: shard files (the unit of mapped work), the earlier snapshots
new rows are checked against, the run's statistics and the DuckDB scratch connection.

A step reads rows `(doc, text)` — `doc` an int64 key that orders the rows (earlier snapshots
have smaller keys) — from DuckDB views `work` (new rows) and `prior` (earlier snapshots' rows).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.curate.config import DedupError
from warehouse.sql import sql_list, sql_str

MINHASH_DIR = "_minhash"  # beside a curated snapshot's data files: signatures, shingle sets
EMBED_DIR = "_embeddings"  # beside a curated snapshot's data files: sentence embeddings
PARAMS_FILE = "params.json"  # the settings a folder of signatures or embeddings was made with


@dataclass
class Prior:
    """An earlier curated snapshot that new rows are deduplicated against."""

    key: str  # e.g. curated/news@1
    files: list[str]  # its data files (doc_key, id, text, keep, near_dup_cluster, ...)
    dir: str  # its folder: `_minhash/` and `_embeddings/` live there


@dataclass
class DedupStats:
    rows: int = 0
    empty: int = 0
    exact_dups: int = 0
    near_dups: int = 0
    semantic_dups: int = 0
    kept: int = 0
    near_bands: int = 0  # the LSH layout used (bands x rows of the signature)
    near_rows: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    near_clusters: int = 0
    largest_cluster: int = 1
    without_shingles: int = 0
    truncated_docs: int = 0
    embedded: int = 0
    prior_rows: int = 0
    recomputed_prior_signatures: int = 0
    recomputed_prior_embeddings: int = 0
    low_quality: int = 0  # rows the quality rules rejected
    quality_rules: dict[str, int] = field(default_factory=dict)  # rule -> rows it decided
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Shard:
    """One unit of mapped work: rows `(doc, text)` in `path`; outputs go to `out_dir`."""

    index: int
    path: str
    out_dir: str


ShardMap = Callable[[str, list[Shard], Any], list[Any]]
"""How shards get run: `shard_map(kind, shards, params)` with kind "minhash" or "embed"."""


class ShardNotReadable(DedupError):
    """A worker cannot see a shard file: the warehouse home is not on a shared filesystem."""


def require_readable(shard: Shard) -> None:
    """Shards travel by path: the flow writes them under the warehouse home (`lake/.tmp/`) and
    a worker reads them there, and writes its outputs there too. A Dask worker on another host
    therefore needs the home on a filesystem it mounts at the same path (NFS, Lustre, a cloud
    file share); this says so plainly instead of failing deep inside pyarrow."""
    if not os.path.isfile(shard.path):
        import socket

        raise ShardNotReadable(
            f"shard {shard.path} is not readable on worker host {socket.gethostname()}: every "
            "worker must mount the warehouse home at the same path (a shared filesystem)"
        )


def connect(scratch: Path, memory_limit: str = "1GB") -> Any:
    import duckdb

    # A database file in scratch, not an in-memory one: its tables can leave memory freely.
    scratch.mkdir(parents=True, exist_ok=True)
    fd, db = tempfile.mkstemp(prefix="dedup-", suffix=".duckdb", dir=scratch)
    os.close(fd)
    os.unlink(db)
    con = duckdb.connect(db)
    con.execute(f"SET temp_directory = {sql_str(str(scratch / 'duckdb-tmp'))}")
    con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def fixed_list_numpy(arr: pa.Array, width: int) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    values = arr.flatten() if not isinstance(arr, pa.FixedSizeListArray) else arr.values
    if isinstance(arr, pa.FixedSizeListArray):
        values = values.slice(arr.offset * width, len(arr) * width)
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), width)


def write_shards(con: Any, query: str, out_dir: Path, prefix: str, shard_rows: int) -> list[Shard]:
    """Stream a `(doc, text)` query into shard files of at most `shard_rows` rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    writer = None
    rows_in = 0
    reader = con.sql(query).to_arrow_reader(min(shard_rows, 10_000))
    for batch in reader:
        start = 0
        while start < batch.num_rows:
            if writer is None:
                path = out_dir / f"{prefix}-{len(shards):05d}.parquet"
                writer = pq.ParquetWriter(path, batch.schema)
                shards.append(Shard(len(shards), str(path), ""))
                rows_in = 0
            take = min(shard_rows - rows_in, batch.num_rows - start)
            writer.write_batch(batch.slice(start, take))
            rows_in += take
            start += take
            if rows_in >= shard_rows:
                writer.close()
                writer = None
    if writer is not None:
        writer.close()
    return shards


def prior_shards(
    con: Any, prior: Prior, scratch: Path, kind: str, shard_rows: int, where: str = "keep"
) -> list[Shard]:
    """Rows of an earlier snapshot (its kept rows by default; `where` is a SQL condition on its
    columns) as shards, for recomputing its signatures or embeddings (only when the settings
    they were made with have changed)."""
    name = prior.key.replace("/", "_").replace("@", "_")
    shards = write_shards(
        con,
        f"SELECT doc_key AS doc, text FROM read_parquet({sql_list(prior.files)}) WHERE {where} "
        "ORDER BY doc_key",
        scratch / f"prior-{kind}-in-{name}",
        "prior",
        shard_rows,
    )
    return [Shard(s.index, s.path, str(scratch / f"prior-{kind}-{name}")) for s in shards]


def params_match(folder: Path, params: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / PARAMS_FILE).read_text()) == params
    except (OSError, ValueError):
        return False
