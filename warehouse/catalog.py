"""The catalog: a DuckDB file that records every snapshot in the Parquet lake.

Layout under a home folder::

    <home>/catalog.duckdb                      the catalog (this module)
    <home>/writer.lock                         single-writer lock (warehouse.lock)
    <home>/lake/<stage>/<name>/v=<n>/*.parquet immutable snapshots
    <home>/lake/.tmp/<id>/                     snapshots being written (same filesystem: rename is atomic)
    <home>/models/<name>/v=<n>/                registered models (warehouse/registry.py)
    <home>/work/                               resumable work of runs (checkpoints, shards)
    <home>/trash/                              orphans of crashed commits, moved aside, never deleted

A commit is: write files into `.tmp/<id>`, fsync, rename to `v=<n>`, then one catalog
transaction. A crash before the rename leaves only `.tmp` litter; a crash between the rename and
the transaction leaves a `v=<n>` folder the catalog does not know. The next writer clears both
before it does anything (in the lake and in the model registry), so neither is visible nor in
anyone's way; it also clears half-written files in `work/` folders no run is using.

Connections are opened per operation and closed at once: DuckDB lets one process hold the file
for writing, so a long-lived connection would lock `llm4all status` out for a whole training run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.files import fsync_path
from warehouse.lock import WriterLock
from warehouse.names import validate_name, validate_stage
from warehouse.refs import DatasetRef, VersionInfo, sha256_of_files

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS dataset_versions (
    stage        VARCHAR   NOT NULL,
    name         VARCHAR   NOT NULL,
    version      INTEGER   NOT NULL,
    path         VARCHAR   NOT NULL,
    rows         BIGINT    NOT NULL,
    sha256       VARCHAR   NOT NULL,
    parent       VARCHAR,            -- key of the snapshot this one was derived from
    created_at   TIMESTAMP NOT NULL,
    flow_run_id  VARCHAR,
    gate_passed  BOOLEAN,            -- NULL until its gate has run
    gate_report  VARCHAR,            -- JSON: the failing expectations, when any
    meta         VARCHAR,            -- JSON: stage-specific counts
    PRIMARY KEY (stage, name, version)
);
CREATE TABLE IF NOT EXISTS ingest_runs (
    run_id          VARCHAR PRIMARY KEY,
    dataset         VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    started_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP NOT NULL,
    rows_in         BIGINT NOT NULL,
    accepted        BIGINT NOT NULL,
    already_present BIGINT NOT NULL,
    quarantined     BIGINT NOT NULL,
    blank_lines     BIGINT NOT NULL,
    version         INTEGER,         -- NULL when the run added nothing
    flow_run_id     VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine (
    run_id   VARCHAR NOT NULL,
    dataset  VARCHAR NOT NULL,
    version  INTEGER,                -- the version the run created, NULL when it created none
    source   VARCHAR NOT NULL,
    line     BIGINT,                 -- 1-based line (JSONL, CSV) or row (Parquet, HF) number
    reason   VARCHAR NOT NULL,
    excerpt  VARCHAR
);
CREATE TABLE IF NOT EXISTS models (      -- the model registry (warehouse/registry.py)
    name         VARCHAR   NOT NULL,
    version      INTEGER   NOT NULL,
    path         VARCHAR   NOT NULL,     -- save_pretrained folder, relative to the home
    parent       VARCHAR,                -- what it was initialised from (a model key or a path)
    teacher      VARCHAR   NOT NULL,
    tokens       VARCHAR   NOT NULL,     -- JSON list of the tokens snapshot keys trained on
    logits       VARCHAR   NOT NULL,     -- JSON list of the logit cache keys (empty online)
    config_hash  VARCHAR   NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    flow_run_id  VARCHAR,
    metrics      VARCHAR,                -- JSON: evaluation and training figures
    gate_passed  BOOLEAN,                -- NULL until its gate has run
    gate_report  VARCHAR,
    promoted     BOOLEAN   NOT NULL,     -- the newest gate-passing version of its name
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS dataset_settings (  -- the config a dataset is built with
    name         VARCHAR PRIMARY KEY,
    config_path  VARCHAR,            -- where the config came from (for people; may be gone)
    config       VARCHAR NOT NULL,   -- JSON: the config file's content ({} for the defaults)
    overrides    VARCHAR NOT NULL,   -- JSON: dotted --set overrides on top of it
    recorded_at  TIMESTAMP NOT NULL,
    flow_run_id  VARCHAR
);
"""

_VERSION_COLUMNS = (
    "stage, name, version, path, rows, sha256, parent, created_at, flow_run_id, gate_passed, meta"
)


class CatalogError(RuntimeError):
    """A catalog operation that cannot be done (unknown snapshot, lock not held, ...)."""


class CatalogBusy(CatalogError):
    """The catalog file stayed locked by another process past the busy timeout."""


class StagedSnapshot:
    """Files being written for a snapshot; invisible until `Transaction.publish`."""

    def __init__(self, stage: str, name: str, directory: Path) -> None:
        self.stage, self.name, self.dir = stage, name, directory

    def seal(self, rows: int | None = None) -> tuple[int, str]:
        """fsync every file; return (rows, sha256 over all files, paths included).

        `rows` defaults to the rows of the top-level Parquet files (tabular stages); a stage
        that stores something else (the logit cache's shards) says how many rows it holds.
        """
        import pyarrow.parquet as pq

        files = sorted(p for p in self.dir.rglob("*") if p.is_file())
        if rows is None:
            tables = sorted(self.dir.glob("*.parquet"))
            if not tables:
                raise CatalogError(f"staged snapshot {self.dir} has no parquet files")
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in tables)
        for f in files:
            fsync_path(f)
        for d in {f.parent for f in files} | {self.dir}:
            fsync_path(d)
        return rows, sha256_of_files(files, root=self.dir)


class Catalog:
    def __init__(
        self, home: Path, busy_timeout_s: float = 30.0, lock_timeout_s: float | None = None
    ) -> None:
        """`lock_timeout_s`: how long `writing()` waits for another writer (default: the
        process-wide bound, `locks.writer_timeout_s`)."""
        self.home = Path(home).resolve()
        self.db_path = self.home / "catalog.duckdb"
        self.lake = self.home / "lake"
        self.busy_timeout_s = busy_timeout_s
        self._lock = WriterLock(self.home, timeout_s=lock_timeout_s)
        self._con: duckdb.DuckDBPyConnection | None = None  # open only inside a transaction
        self._read_con: duckdb.DuckDBPyConnection | None = None  # open only inside reading()

    # ------------------------------------------------------------------ connections
    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only)
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise CatalogBusy(f"catalog {self.db_path} is busy: {e}") from e
                time.sleep(0.05)

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A connection for reading; None when no catalog exists yet."""
        if self._con is not None:  # inside our own transaction: read through it
            yield self._con
            return
        if self._read_con is not None:  # inside reading()
            yield self._read_con
            return
        if not self.db_path.exists():
            yield None
            return
        con = self._connect(read_only=not self._lock.held)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def reading(self) -> Iterator[Catalog]:
        """Serve every read inside from one read connection: one view of the catalog, and one
        open instead of one per read (a check made of many small reads, e.g. whether a pipeline
        run has anything to do). Reads only: writers wait meanwhile, `writing()` is refused."""
        if self._con is not None or self._read_con is not None or not self.db_path.exists():
            yield self
            return
        self._read_con = self._connect(read_only=not self._lock.held)
        try:
            yield self
        finally:
            con, self._read_con = self._read_con, None
            con.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as con:
            if con is None:
                return []
            return con.execute(sql, list(params)).fetchall()

    # ------------------------------------------------------------------ writing
    @contextmanager
    def writing(self) -> Iterator[Catalog]:
        """Hold the single-writer lock: create the schema and clear crash leftovers first."""
        if self._lock.held:
            yield self
            return
        if self._read_con is not None:
            raise CatalogError("catalog writes cannot start inside `reading()`")
        self._lock.acquire()
        try:
            self.lake.mkdir(parents=True, exist_ok=True)
            if not self.db_path.exists():
                self._create()
            con = self._connect(read_only=False)
            try:
                con.execute(_SCHEMA)
                con.execute(
                    "INSERT OR REPLACE INTO catalog_meta VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)],
                )
            finally:
                con.close()
            self._recover()
            yield self
        finally:
            self._lock.release()

    def _create(self) -> None:
        """A new catalog file appears with its schema or not at all: built under a temporary
        name, then renamed (a writer killed between DuckDB creating the file and the schema's
        commit would leave a catalog that every reader fails on)."""
        for stale in self.home.glob(f".{self.db_path.name}.*.tmp*"):  # an earlier kill's
            stale.unlink(missing_ok=True)
        tmp = self.db_path.with_name(f".{self.db_path.name}.{uuid.uuid4().hex}.tmp")
        try:
            con = duckdb.connect(str(tmp))
            try:
                con.execute(_SCHEMA)
            finally:
                con.close()
            fsync_path(tmp)
            os.replace(tmp, self.db_path)
            fsync_path(self.db_path.parent)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)

    def _require_writer(self) -> None:
        if not self._lock.held:
            raise CatalogError("catalog writes need the writer lock: use `with catalog.writing():`")

    def _recover(self) -> None:
        """Undo what a writer that died mid-commit left behind (we hold the lock): staged
        files, and snapshot or model folders that were renamed into place but never
        committed. Such folders are moved to `trash/`, never deleted."""
        for tmp in (self.lake / ".tmp", self.home / "models" / ".tmp"):
            if tmp.exists():
                shutil.rmtree(tmp)  # partial writes of a dead writer
        known = {row[0] for row in self._query("SELECT path FROM dataset_versions")}
        known |= {row[0] for row in self._query("SELECT path FROM models")}
        known = {str(self.home / p) for p in known}
        for root, what in ((self.lake, "snapshot"), (self.home / "models", "model")):
            if not root.exists():
                continue
            for stage_dir in root.iterdir():
                if stage_dir.name.startswith(".") or not stage_dir.is_dir():
                    continue
                pattern = "*/v=*" if what == "snapshot" else "v=*"
                for vdir in stage_dir.glob(pattern):
                    if str(vdir) not in known:
                        self._trash(vdir, what)
        from warehouse.work import recover_work

        recover_work(self.home)

    def _trash(self, vdir: Path, what: str) -> None:
        parts = vdir.relative_to(self.home).parts
        dest = self.home / "trash" / f"{'-'.join(parts)}-{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(vdir, dest)
        log.warning("moved uncommitted %s %s to %s", what, vdir, dest)

    def stage_snapshot(self, stage: str, name: str) -> StagedSnapshot:
        """A fresh temp folder on the lake's filesystem to write a snapshot's files into."""
        self._require_writer()
        validate_stage(stage)
        validate_name(name)
        d = self.lake / ".tmp" / uuid.uuid4().hex
        d.mkdir(parents=True)
        return StagedSnapshot(stage, name, d)

    def scratch_dir(self) -> Path:
        """A temp folder (removed by the next writer if we crash) for intermediate files."""
        self._require_writer()
        d = self.lake / ".tmp" / f"scratch-{uuid.uuid4().hex}"
        d.mkdir(parents=True)
        return d

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        self._require_writer()
        if self._con is not None:
            raise CatalogError("nested catalog transactions are not supported")
        con = self._connect(read_only=False)
        self._con = con
        tx = Transaction(self, con)
        con.execute("BEGIN TRANSACTION")
        try:
            yield tx
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            tx._undo_renames()
            raise
        finally:
            self._con = None
            con.close()

    def record_settings(
        self,
        name: str,
        config_path: str | None,
        config: dict[str, Any],
        overrides: dict[str, Any],
        flow_run_id: str | None = None,
    ) -> None:
        """Record (or replace) the config a dataset is built with."""
        self._require_writer()
        validate_name(name)
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO dataset_settings VALUES (?, ?, ?, ?, ?, ?)",
                [
                    name,
                    config_path,
                    json.dumps(config, sort_keys=True, default=str),
                    json.dumps(overrides, sort_keys=True, default=str),
                    datetime.now(UTC).replace(tzinfo=None),
                    flow_run_id,
                ],
            )

    def settings(self, name: str) -> dict[str, Any] | None:
        """{config_path, config, overrides, recorded_at, flow_run_id} the dataset was built
        with, or None when none is recorded."""
        try:
            rows = self._query(
                "SELECT config_path, config, overrides, recorded_at, flow_run_id "
                "FROM dataset_settings WHERE name = ?",
                [name],
            )
        except duckdb.CatalogException:  # a catalog made before settings were recorded
            return None
        if not rows:
            return None
        path, config, overrides, at, run = rows[0]
        return {
            "config_path": path,
            "config": json.loads(config),
            "overrides": json.loads(overrides),
            "recorded_at": at,
            "flow_run_id": run,
        }

    def set_gate(self, ref: DatasetRef, passed: bool, report: dict[str, Any] | None) -> None:
        self._require_writer()
        with self.transaction() as tx:
            tx.execute(
                "UPDATE dataset_versions SET gate_passed = ?, gate_report = ? "
                "WHERE stage = ? AND name = ? AND version = ?",
                [passed, json.dumps(report) if report else None, ref.stage, ref.name, ref.version],
            )

    # ------------------------------------------------------------------ reading
    def versions(self, stage: str | None = None, name: str | None = None) -> list[VersionInfo]:
        sql = f"SELECT {_VERSION_COLUMNS} FROM dataset_versions WHERE 1=1"
        params: list[Any] = []
        if stage is not None:
            sql += " AND stage = ?"
            params.append(stage)
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        sql += " ORDER BY stage, name, version"
        return [_version_info(self.home, r) for r in self._query(sql, params)]

    def get(self, stage: str, name: str, version: int | None = None) -> VersionInfo:
        """One version (the newest when `version` is None); raises CatalogError if absent."""
        rows = self.versions(stage, name)
        if version is not None:
            rows = [v for v in rows if v.ref.version == version]
        if not rows:
            what = f"{stage}/{name}" + (f"@{version}" if version is not None else "")
            raise CatalogError(f"no snapshot {what} in {self.home}")
        return rows[-1]

    def latest(self, stage: str, name: str, *, gated: bool = True) -> DatasetRef | None:
        """The newest version, by default the newest that passed its gate."""
        rows = [v for v in self.versions(stage, name) if v.gate_passed or not gated]
        return rows[-1].ref if rows else None

    def snapshot_paths(
        self, stage: str, name: str, up_to: int | None = None, *, gated: bool = True
    ) -> list[Path]:
        """Parquet files making up the dataset as of `up_to` (all its deltas)."""
        files: list[Path] = []
        for v in self.versions(stage, name):
            if (up_to is None or v.ref.version <= up_to) and (v.gate_passed or not gated):
                files.extend(v.ref.files())
        return files

    def lineage(self, stage: str, name: str, version: int) -> list[VersionInfo]:
        """This version, then its parent, grandparent, ... (stops at a missing link)."""
        chain = [self.get(stage, name, version)]
        seen = {chain[0].ref.key}
        while (parent := chain[-1].parent) and parent not in seen:
            seen.add(parent)
            p_stage, rest = parent.split("/", 1)
            p_name, p_version = rest.rsplit("@", 1)
            try:
                chain.append(self.get(p_stage, p_name, int(p_version)))
            except CatalogError:
                break
        return chain

    def gate_report(self, ref: DatasetRef) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT gate_report FROM dataset_versions WHERE stage=? AND name=? AND version=?",
            [ref.stage, ref.name, ref.version],
        )
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def ingest_runs(self, dataset: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM ingest_runs"
        params: list[Any] = []
        if dataset is not None:
            sql += " WHERE dataset = ?"
            params.append(dataset)
        sql += " ORDER BY started_at"
        with self._reader() as con:
            if con is None:
                return []
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def quarantined(
        self, dataset: str, run_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT run_id, dataset, version, source, line, reason, excerpt FROM quarantine WHERE dataset = ?"
        params: list[Any] = [dataset]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += " ORDER BY run_id, line"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        cols = ("run_id", "dataset", "version", "source", "line", "reason", "excerpt")
        return [dict(zip(cols, r, strict=True)) for r in self._query(sql, params)]


class Transaction:
    """One catalog transaction; `publish` moves a staged snapshot into the lake inside it."""

    def __init__(self, catalog: Catalog, con: duckdb.DuckDBPyConnection) -> None:
        self.catalog, self.con = catalog, con
        self._renames: list[tuple[Path, Path]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> duckdb.DuckDBPyConnection:
        return self.con.execute(sql, list(params))

    def publish(
        self,
        staged: StagedSnapshot,
        *,
        parent: str | None = None,
        flow_run_id: str | None = None,
        meta: dict[str, Any] | None = None,
        rows: int | None = None,
    ) -> DatasetRef:
        rows, digest = staged.seal(rows)
        ((last,),) = self.con.execute(
            "SELECT coalesce(max(version), 0) FROM dataset_versions WHERE stage = ? AND name = ?",
            [staged.stage, staged.name],
        ).fetchall()  # fetchall: a half-read result would block the connection
        version = int(last) + 1
        target = self.catalog.lake / staged.stage / staged.name / f"v={version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged.dir, target)  # fails if target exists: never overwrite a snapshot
        self._renames.append((target, staged.dir))
        fsync_path(target.parent)
        ref = DatasetRef(staged.stage, staged.name, version, str(target), rows, digest)
        self.con.execute(
            "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
            [
                ref.stage,
                ref.name,
                ref.version,
                str(target.relative_to(self.catalog.home)),  # relative: the home may move
                ref.rows,
                ref.sha256,
                parent,
                datetime.now(UTC).replace(tzinfo=None),
                flow_run_id,
                json.dumps(meta or {}),
            ],
        )
        return ref

    def _undo_renames(self) -> None:
        for target, original in reversed(self._renames):
            if target.exists():
                os.rename(target, original)  # back to .tmp, where the next writer clears it


def _version_info(home: Path, r: tuple[Any, ...]) -> VersionInfo:
    stage, name, version, path, rows, sha, parent, created, flow_run_id, gate, meta = r
    return VersionInfo(
        ref=DatasetRef(stage, name, int(version), str(home / path), int(rows), sha),
        parent=parent,
        created_at=created,
        flow_run_id=flow_run_id,
        gate_passed=gate,
        meta=json.loads(meta) if meta else {},
    )
