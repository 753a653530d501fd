from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import (
    Catalog,
    CatalogError,
    InvalidName,
    WarehouseBusy,
    resolve_home,
    validate_name,
)


def _stage_rows(catalog: Catalog, name: str, n: int):
    staged = catalog.stage_snapshot("raw", name)
    pq.write_table(pa.table({"id": [str(i) for i in range(n)]}), staged.dir / "part-0.parquet")
    return staged


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "x'y", 'x"y', "..", ".hidden", "a b", "a;drop", "x" * 200]
)
def test_names_that_could_escape_the_lake_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(bad)


def test_ordinary_names_pass() -> None:
    for ok in ("news", "cnn_dailymail", "fr-legal.v2", "A1"):
        assert validate_name(ok) == ok


def test_home_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLM4ALL_HOME", raising=False)
    assert resolve_home(None) == (Path.cwd() / ".llm4all").resolve()
    assert resolve_home(tmp_path / "cfg") == (tmp_path / "cfg").resolve()
    monkeypatch.setenv("LLM4ALL_HOME", str(tmp_path / "env"))
    assert resolve_home(tmp_path / "cfg") == (tmp_path / "env").resolve()


def test_publish_versions_latest_and_lineage(catalog: Catalog) -> None:
    with catalog.writing():
        with catalog.transaction() as tx:
            v1 = tx.publish(_stage_rows(catalog, "news", 3))
        with catalog.transaction() as tx:
            v2 = tx.publish(_stage_rows(catalog, "news", 2), parent=v1.key, meta={"k": 1})
        catalog.set_gate(v1, True, None)
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.rows, v2.rows) == (3, 2)
    assert Path(v2.path) == catalog.home / "lake" / "raw" / "news" / "v=2"
    assert catalog.latest("raw", "news") == v1  # v2 has not passed its gate
    assert catalog.latest("raw", "news", gated=False) == v2
    assert [v.ref.key for v in catalog.lineage("raw", "news", 2)] == ["raw/news@2", "raw/news@1"]
    assert catalog.get("raw", "news", 2).meta == {"k": 1}
    assert len(catalog.snapshot_paths("raw", "news")) == 1  # only the gated delta
    assert len(catalog.snapshot_paths("raw", "news", gated=False)) == 2
    assert len(v1.sha256) == 64 and v1.sha256 != v2.sha256
    with pytest.raises(CatalogError):
        catalog.get("raw", "news", 7)


def test_reads_inside_reading_share_one_connection(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    with catalog.reading():  # no catalog yet: reads answer as outside
        assert catalog.versions("raw") == [] and catalog.ingest_runs() == []
    with catalog.writing(), catalog.transaction() as tx:
        tx.publish(_stage_rows(catalog, "news", 3), meta={"k": 1})
    outside = catalog.versions("raw", "news"), catalog.settings("news"), catalog.ingest_runs()
    opened: list[object] = []
    connect = duckdb.connect

    def counted(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        opened.append(args)
        return connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counted)
    with catalog.reading():
        inside = catalog.versions("raw", "news"), catalog.settings("news"), catalog.ingest_runs()
        assert catalog.get("raw", "news").meta == {"k": 1} and len(opened) == 1
        with pytest.raises(CatalogError, match="reading"), catalog.writing():
            pass
    assert inside == outside and len(opened) == 1
    catalog.versions("raw", "news")
    assert len(opened) == 2  # outside it: a connection per read again


def test_writes_need_the_writer_lock(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="writer lock"):
        catalog.stage_snapshot("raw", "news")


def test_failure_inside_the_transaction_leaves_nothing_visible(catalog: Catalog) -> None:
    with catalog.writing():
        staged = _stage_rows(catalog, "news", 3)
        with pytest.raises(RuntimeError, match="injected"), catalog.transaction() as tx:
            tx.publish(staged)  # files renamed into the lake, row inserted ...
            raise RuntimeError("injected")  # ... and then the commit never happens
    assert catalog.versions() == []
    assert not (catalog.lake / "raw" / "news" / "v=1").exists()
    # The next commit takes version 1 without tripping over anything.
    with catalog.writing(), catalog.transaction() as tx:
        ref = tx.publish(_stage_rows(catalog, "news", 1))
    assert ref.version == 1 and ref.rows == 1


def test_a_crash_between_rename_and_commit_leaves_an_orphan_the_next_writer_moves_aside(
    home: Path,
) -> None:
    # A real process that dies (SIGKILL) right after moving its files into the lake.
    script = textwrap.dedent(
        f"""
        import os, signal
        import pyarrow as pa, pyarrow.parquet as pq
        from warehouse import Catalog
        from warehouse import catalog as mod

        def publish_then_die(self, staged, **kw):
            os.rename(staged.dir, self.catalog.lake / "raw" / "news" / "v=1")
            os.kill(os.getpid(), signal.SIGKILL)
        c = Catalog({str(home)!r})
        with c.writing():
            s = c.stage_snapshot("raw", "news")
            pq.write_table(pa.table({{"id": ["a"]}}), s.dir / "part-0.parquet")
            (c.lake / "raw" / "news").mkdir(parents=True, exist_ok=True)
            mod.Transaction.publish = publish_then_die
            with c.transaction() as tx:
                tx.publish(s)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    catalog = Catalog(home)
    assert catalog.versions() == []  # nothing committed is visible
    assert (catalog.lake / "raw" / "news" / "v=1").exists()  # the orphan, for now
    with catalog.writing(), catalog.transaction() as tx:
        ref = tx.publish(_stage_rows(catalog, "news", 2))
    assert ref.version == 1 and ref.rows == 2
    trashed = list((home / "trash").iterdir())
    assert len(trashed) == 1  # moved aside, not deleted
    assert not (catalog.lake / ".tmp").exists() or not any((catalog.lake / ".tmp").iterdir())


def test_second_writer_waits_naming_the_holder_then_gives_up_or_gets_it(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from warehouse import Catalog\n"
            f"c = Catalog({str(home)!r})\n"
            "with c.writing():\n    print('locked', flush=True); time.sleep(float(input()))",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        caplog.set_level(logging.INFO, logger="warehouse.lock")
        with (
            pytest.raises(WarehouseBusy, match=f"pid {holder.pid}.*gave up after 1 s"),
            Catalog(home, lock_timeout_s=1.0).writing(),
        ):
            pass
        assert f"held by pid {holder.pid}" in caplog.text  # the progress line names it
        # Readers are not blocked by a writer.
        assert Catalog(home).versions() == []
        assert holder.stdin is not None
        holder.stdin.write("1.5\n")
        holder.stdin.flush()
        with Catalog(home).writing():  # waits (default bound) until the holder is done
            assert holder.poll() is not None or holder.wait(timeout=5) == 0
    finally:
        holder.kill()
        holder.wait()
    with Catalog(home).writing():  # the kernel released the dead holder's lock
        pass


def test_reading_an_empty_home_returns_nothing(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "nowhere")
    assert c.versions() == [] and c.latest("raw", "x") is None and c.ingest_runs() == []
    assert not (tmp_path / "nowhere").exists()  # reading creates nothing


def test_readers_wait_out_a_brief_writer_connection(catalog: Catalog) -> None:
    with catalog.writing(), catalog.transaction() as tx:
        tx.publish(_stage_rows(catalog, "news", 1))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = (
        "import duckdb, time, sys\n"
        f"con = duckdb.connect({str(catalog.db_path)!r})\n"
        "print('open', flush=True); time.sleep(1.0); con.close(); print('closed', flush=True)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None and p.stdout.readline().strip() == "open"
    assert [v.ref.key for v in Catalog(catalog.home).versions()] == ["raw/news@1"]
    p.wait()


def test_a_writer_that_dies_while_creating_the_catalog_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog file appears with its schema or not at all: a writer killed between DuckDB
    creating the file and the schema's commit once left a catalog every reader failed on
    ("Table with name dataset_versions does not exist", seen in test_faults)."""
    import duckdb

    import warehouse.catalog as catalog_module

    catalog = Catalog(tmp_path / "home")
    monkeypatch.setattr(catalog_module, "_SCHEMA", "CREATE TABLE broken (")  # dies mid-way
    with pytest.raises(duckdb.ParserException), catalog.writing():
        pass
    assert not catalog.db_path.exists() and catalog.versions() == []
    assert not list(catalog.home.glob(".catalog.duckdb.*"))  # no half-made file either
    monkeypatch.undo()
    with catalog.writing():
        pass
    assert catalog.db_path.exists() and catalog.versions() == []
