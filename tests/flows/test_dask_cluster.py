"""Curation on a real Dask cluster: a `dask scheduler` and two `dask worker` processes started
with their own CLIs on loopback (free ports), `llm4all curate` run as a process against that
address; its decisions must equal a local (in-process, thread pool) run's, value for value."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from data_quality import gate
from flows.config import Config
from tasks.curate.curate import curate_next
from tasks.ingest.ingest import ingest
from tests.helpers import write_jsonl
from tests.tiny import WORDS
from warehouse import Catalog

pytestmark = [pytest.mark.flow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DECISIONS = [
    "doc_key", "id", "keep", "reason", "exact_hash", "exact_dup_of", "quality_reason",
    "near_dup_cluster", "semantic_dup_of", "mgt_score", "factuality_score", "sample_weight",
]  # fmt: skip


def _rows() -> list[dict]:
    """40 documents in the tiny tokenizer's words, with an exact and two near duplicates."""
    rng = random.Random(0)
    docs = [
        " ".join(" ".join(rng.choice(WORDS) for _ in range(10)) + "." for _ in range(8))
        for _ in range(40)
    ]
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(docs)]
    rows.append({"id": "exact", "text": docs[3].upper()})  # same after normalisation
    for i in (5, 9):  # one word changed out of 80: word 5-gram Jaccard 71/81 = 0.88 >= 0.8
        words = docs[i].split()
        words[40] = "cat" if words[40] != "cat" else "dog"
        rows.append({"id": f"near{i}", "text": " ".join(words)})
    return rows


def _process_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(ROOT),  # a worker imports tasks.curate from this tree, not another
        OMP_NUM_THREADS="1",
    )
    return env


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`python -m dask ARGS` in the repo root, output to `log`."""
    with open(log, "wb") as out:  # the child keeps its own handle
        cmd = [sys.executable, "-m", "dask", *args]
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two single-threaded workers, each its own process, on 127.0.0.1."""
    from distributed import Client

    info = tmp_path / "scheduler.json"
    env = _process_env()
    scheduler = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    procs = [_start([*scheduler, "--scheduler-file", str(info)], tmp_path / "scheduler.log", env)]
    try:
        deadline = time.monotonic() + 120
        while not info.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]  # the port the scheduler got
        for i in (0, 1):
            worker = ["worker", address, "--name", f"w{i}", "--no-nanny", "--nthreads", "1"]
            worker += ["--host", "127.0.0.1", "--no-dashboard"]
            worker += ["--local-directory", str(tmp_path / f"w{i}")]
            procs.append(_start(worker, tmp_path / f"w{i}.log", env))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=180)
            workers = client.scheduler_info()["workers"]
            assert {w["name"] for w in workers.values()} == {"w0", "w1"}
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _embedding_models_loaded() -> int:
    """Run on a worker: how many sentence-transformers models its process has loaded."""
    from tasks.curate import semantic

    return len(semantic._MODELS)


def _signatures(cat: Catalog) -> dict[str, list]:
    """The sketch files (signatures and shingle sets) of the latest curated snapshot."""
    versions = cat.versions("curated", "news")
    files = sorted((Path(versions[-1].ref.path) / "_minhash").glob("sketch-*.parquet"))
    assert len(files) == 6  # shards of 8 rows
    return pq.read_table(files).sort_by("doc").to_pydict()


def _home(tmp: Path, name: str, source: Path) -> Catalog:
    cat = Catalog(tmp / name)
    res = ingest(str(source), "news", cat, progress=False)
    gate("raw", res.ref, cat)
    return cat


def _decisions(cat: Catalog) -> dict[str, list]:
    ref = cat.latest("curated", "news")
    assert ref is not None
    return pq.read_table(ref.files(), columns=DECISIONS).to_pydict()


def test_curate_on_a_dask_cluster_decides_as_a_local_run(
    tmp_path: Path, dask_cluster: str, tiny_st_model: str, prefect_harness: None
) -> None:
    from distributed import Client
    from prefect.settings import PREFECT_API_URL

    source = write_jsonl(tmp_path / "in.jsonl", _rows())
    dedup = {
        "semantic": {"model": tiny_st_model, "eps": 1e-3, "n_clusters": 2},
        "runner": {"shard_rows": 8},
    }
    # the reference: the same steps in this process, on a thread pool
    local = _home(tmp_path, "local", source)
    cfg = Config.model_validate({"dedup": dedup})
    ref = curate_next("news", local, cfg.dedup).ref
    assert ref is not None
    gate("curated", ref, local, cfg.gates)

    cluster = _home(tmp_path, "cluster", source)
    config = tmp_path / "dask.yaml"
    runner = {"kind": "dask", "address": dask_cluster, "shard_rows": 8}
    config.write_text(yaml.safe_dump({"dedup": dedup | {"runner": runner}}))
    env = _process_env() | {
        "LLM4ALL_HOME": str(tmp_path / "cluster"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the test session's server
    }
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "curate", "-d", "news", "-c", str(config), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["ok"] and out["rows"] == 43 and out["versions"][0]["gate"]["passed"]

    ours, theirs = _decisions(cluster), _decisions(local)
    assert ours == theirs
    # not trivial decisions (the tiny random embedding model finds most rows alike)
    assert {"exact_dup", "near_dup", "semantic_dup"} <= set(ours["reason"])
    # the shards ran in the worker processes: each loaded the embedding model
    with Client(dask_cluster, timeout=60) as client:
        loaded = client.run(_embedding_models_loaded)
    assert sorted(loaded.values()) == [1, 1], loaded
    # and they wrote the same signatures the local run did: 42 rows after exact dedup, 6 shards
    assert _signatures(cluster) == _signatures(local)
    assert len(_signatures(cluster)["doc"]) == 42
