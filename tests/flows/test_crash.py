"""`kill -9` during an ingest: status shows only complete versions; a rerun finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import good_records, write_jsonl
from warehouse import Catalog
from warehouse.refs import sha256_of_files


def _llm4all(*args: str) -> list[str]:
    return [sys.executable, "-c", "from flows.cli import main; main()", *args]


def _assert_only_complete_versions(home: Path) -> None:
    for v in Catalog(home).versions():
        files = v.ref.files()
        assert files, f"{v.ref.key} has no files"
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == v.ref.rows
        assert sha256_of_files(files) == v.ref.sha256


@pytest.mark.slow
@pytest.mark.flow
def test_kill_9_during_ingest(prefect_harness: None, home: Path, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    n = 200_000
    src = write_jsonl(tmp_path / "big.jsonl", good_records(n))
    env = {**os.environ, "LLM4ALL_HOME": str(home), "PREFECT_API_URL": PREFECT_API_URL.value()}
    # Kill at different moments: while reading, around the commit, during the gate.
    for delay in (0.3, 1.2, 2.5):
        proc = subprocess.Popen(
            _llm4all("ingest", str(src), "-d", "big"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until the ingest task is really running
            if "ingest-source" in line or "ingest big" in line:
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_only_complete_versions(home)
        status = subprocess.run(
            _llm4all("status", "--json"), env=env, capture_output=True, text=True, check=True
        )
        json.loads(status.stdout)  # the catalog is readable after every kill

    done = subprocess.run(
        _llm4all("ingest", str(src), "-d", "big", "--json"), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    _assert_only_complete_versions(home)
    catalog = Catalog(home)
    versions = catalog.versions("raw", "big")
    assert all(v.gate_passed for v in versions)  # a version left pending was gated on rerun
    ids = pq.read_table(catalog.snapshot_paths("raw", "big"), columns=["id"]).column("id")
    assert len(ids) == n and len(set(ids.to_pylist())) == n  # nothing lost, nothing twice
