"""The curate funnel as a Prefect markdown artifact, with the histograms embedded."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.flow


def test_publish_report_creates_a_markdown_artifact(tmp_path: Path, prefect_harness: None) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.curate.report import funnel, plot_scores, publish_report

    part = tmp_path / "part-0.parquet"
    pq.write_table(
        pa.table(
            {
                "keep": [True, False, False, True],
                "reason": [None, "quality", "machine_generated", None],
                "quality_reason": [None, "gopher_short_document: 3 words < 50", None, None],
                "mgt_score": [-1.0, None, 2.5, 0.1],
                "factuality_score": [None, None, None, 0.9],
            }
        ),
        part,
    )
    f = funnel([str(part)])
    assert f["dropped"] == {"machine_generated": 1, "quality": 1}
    assert f["quality_rules"] == {"gopher_short_document": 1} and f["mgt_scored"] == 3
    png = plot_scores([str(part)], f, tmp_path / "scores.png", "t")
    report = {"funnel": f, "title": "curate funnel: curated/x@7", "png": str(png)}
    report["markdown"] = str(tmp_path / "funnel.md")

    @flow
    def publish() -> None:
        publish_report(report)

    publish()
    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["curate-funnel--curated-x-7"])
            )
        )
    assert art.type == "markdown"
    assert "| dropped: quality | 1 |" in art.data and "data:image/png;base64," in art.data
