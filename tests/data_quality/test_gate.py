from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_quality import GateFailed, GatesConfig, RawGateConfig, gate
from tasks.ingest.ingest import content_sha256, ingest
from tests.helpers import good_records, write_jsonl
from warehouse import Catalog


def _publish_raw(catalog: Catalog, ids: list[str], texts: list[str]):
    """A raw snapshot written by hand, to break the rules ingest would never break."""
    with catalog.writing():
        staged = catalog.stage_snapshot("raw", "hand")
        table = pa.table(
            {
                "id": ids,
                "text": texts,
                "summary": pa.nulls(len(ids), pa.string()),
                "source": ["test"] * len(ids),
                "content_sha256": [content_sha256(t, None) for t in texts],
            }
        )
        pq.write_table(table, staged.dir / "part-0.parquet")
        with catalog.transaction() as tx:
            return tx.publish(staged)


def test_a_clean_ingest_passes_and_is_marked(tmp_path: Path, catalog: Catalog) -> None:
    r = ingest(
        str(write_jsonl(tmp_path / "a.jsonl", good_records(50))), "news", catalog, progress=False
    )
    result = gate("raw", r.ref, catalog)
    assert result.passed and all(o.success for o in result.outcomes)
    assert {o.batch for o in result.outcomes} == {"snapshot", "ingest_run"}
    assert catalog.get("raw", "news", 1).gate_passed is True
    assert catalog.latest("raw", "news") == r.ref


def test_failures_name_the_expectation_with_counts_and_example_ids(catalog: Catalog) -> None:
    ref = _publish_raw(catalog, ["a", "b", "b", "c"], ["fine", "dup id", "dup id 2", "x" * 50])
    cfg = GatesConfig(raw=RawGateConfig(max_chars=10), examples=3)
    with pytest.raises(GateFailed) as e:
        gate("raw", ref, catalog, cfg)
    failed = {o.expectation: o for o in e.value.result.failures}
    assert set(failed) == {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
    }
    unique = failed["expect_column_values_to_be_unique"]
    assert (unique.column, unique.unexpected_count, unique.element_count) == ("id", 2, 4)
    assert unique.examples == ["b", "b"]
    too_long = failed["expect_column_values_to_be_between"]
    assert too_long.column == "text_chars" and too_long.examples == ["c (text_chars=50)"]
    assert "expect_column_values_to_be_unique(column=id): 2 of 4 rows fail" in str(e.value)
    info = catalog.get("raw", "hand", 1)
    assert info.gate_passed is False and catalog.latest("raw", "hand") is None
    assert catalog.gate_report(ref)["failures"]


def test_a_mostly_garbage_run_fails_even_without_a_snapshot(catalog: Catalog) -> None:
    run = {"run_id": "r1", "rows_in": 10, "quarantined": 9}
    with pytest.raises(GateFailed, match="quarantined_share"):
        gate("raw", None, catalog, run=run)
    ok = gate("raw", None, catalog, run={"run_id": "r2", "rows_in": 10, "quarantined": 1})
    assert ok.passed and ok.target == "ingest run r2"


def test_gate_needs_something_to_check(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="needs"):
        gate("raw", None, catalog)
    with pytest.raises(ValueError, match="no gate suite"):
        gate("nonsense", None, catalog, run={})


def test_a_gate_renders_its_data_docs_under_the_home(catalog: Catalog) -> None:
    ref = _publish_raw(catalog, ["a", "b", "b"], ["fine", "dup id", "other"])
    with pytest.raises(GateFailed) as e:
        gate("raw", ref, catalog)
    docs = e.value.result.data_docs
    assert docs is not None and Path(docs) == (
        catalog.home / "data_docs" / "raw" / "raw-hand-1" / "index.html"
    )
    pages = list(Path(docs).parent.rglob("*.html"))
    html = "\n".join(p.read_text() for p in pages)
    assert "expect_column_values_to_be_unique" in html or "values must be unique" in html
    assert e.value.result.to_dict()["data_docs"] == docs
    with pytest.raises(GateFailed) as quiet:
        gate("raw", ref, catalog, GatesConfig(data_docs=False))
    assert quiet.value.result.data_docs is None


def test_a_factuality_model_below_the_auroc_floor_fails(catalog: Catalog) -> None:
    run = {"run_id": "models/factuality@1", "target": "models/factuality@1"}
    cfg = GatesConfig(data_docs=False)
    ok = gate("factuality", None, catalog, cfg, run={**run, "metrics": {"gate_auroc": 0.91}})
    assert ok.passed
    with pytest.raises(GateFailed, match="gate_auroc"):
        gate("factuality", None, catalog, cfg, run={**run, "metrics": {"gate_auroc": 0.55}})


@pytest.mark.parametrize(
    ("stage", "good", "bad", "failing"),
    [
        ("student", {"ppl_ratio": 1.2}, {"ppl_ratio": 9.0}, "ppl_ratio"),
        (
            "quantized",
            {"bits": 8, "weight_bytes_ratio": 0.3, "disk_bytes_ratio": 0.4, "ppl_delta_pct": 0.2},
            {"bits": 4, "weight_bytes_ratio": 0.2, "disk_bytes_ratio": 0.3, "ppl_delta_pct": 9.0},
            "ppl_delta_pct",
        ),
        ("student", {"ppl_ratio": 1.2}, {"ppl_ratio": 1.2, "loss": float("nan")}, "metrics_finite"),
    ],
)
def test_model_gates_check_finite_metrics_and_their_bounds(
    catalog: Catalog, stage: str, good: dict, bad: dict, failing: str
) -> None:
    run = {"run_id": f"models/m@{stage}", "target": f"models/m@{stage}", "bad_weights": 0}
    cfg = GatesConfig(data_docs=False)
    assert gate(stage, None, catalog, cfg, run={**run, "metrics": good}).passed
    with pytest.raises(GateFailed, match=failing):
        gate(stage, None, catalog, cfg, run={**run, "metrics": bad})
