"""The curate flow under Prefect: threads (default) and a 2-worker Dask LocalCluster."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from data_quality import gate
from flows.cli import app
from tasks.ingest.ingest import ingest
from tests.helpers import write_jsonl
from warehouse import Catalog

pytestmark = pytest.mark.flow


def _doc(rng: random.Random, n: int = 120) -> str:
    return " ".join(f"tok{rng.randrange(100_000)}" for _ in range(n))


def _setup(tmp: Path, runner: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Catalog]:
    rng = random.Random(0)
    home = tmp / "home"
    monkeypatch.setenv("LLM4ALL_HOME", str(home))
    cat = Catalog(home)
    docs = [_doc(rng) for _ in range(30)]
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(docs)]
    rows.append({"id": "dup", "text": docs[4] + "\n"})
    res = ingest(str(write_jsonl(tmp / "in.jsonl", rows)), "news", cat, progress=False)
    gate("raw", res.ref, cat)
    cfg = {
        "dedup": {
            "semantic": {"enabled": False},
            "quality": {"enabled": False},
            "runner": {"kind": runner, "workers": 2, "shard_rows": 8},
        },
        "gates": {"curated": {"min_rows_for_shares": 10}},
    }
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cat


@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_curate_flow(
    runner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    cfg, cat = _setup(tmp_path, runner, monkeypatch)
    res = CliRunner().invoke(app, ["curate", "--dataset", "news", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] and out["rows"] == 31 and out["kept"] == 30
    (v,) = out["versions"]
    assert v["gate"]["passed"]
    report = v["report"]  # the funnel, written under the home and published as an artifact
    assert report["funnel"]["dropped"] == {"exact_dup": 1} and Path(report["png"]).is_file()
    assert Path(report["markdown"]).read_text().startswith("# curate funnel: curated/news@1")
    ref = cat.latest("curated", "news")
    assert ref is not None and ref.version == 1
    shards = sorted((Path(ref.path) / "_minhash").glob("sketch-*.parquet"))
    assert len(shards) == 4  # 30 sketches in shards of 8
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in shards) == 30
    rows = pq.ParquetFile(ref.files()[0]).read().to_pydict()
    assert rows["exact_dup_of"][-1] == "r4"
    # nothing pending: a second run is a no-op
    res = CliRunner().invoke(app, ["curate", "-d", "news", "-c", str(cfg), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["versions"] == []
