import base64
import re

from tasks.report.markdown import refresh_markdown, stage_summaries


def _refresh_out(promote: bool) -> dict:
    decision = {
        "promote": promote,
        "reason": "new-data perplexity 40.000 -> 30.000 (-25.00%), old-data 20.000 -> 20.200 (+1.00%)",
        "old_ppl_before": 20.0,
        "old_ppl_after": 20.2,
        "new_ppl_before": 40.0,
        "new_ppl_after": 30.0,
        "old_regression": 0.01,
        "new_gain": 0.25,
    }
    history = [
        {"step": 1, "loss": 3.0, "val_loss": None},
        {"step": 2, "loss": 2.5, "val_loss": 2.9},
    ]
    metrics = {"disk_bytes_ratio": 0.25, "ppl_delta_pct": 0.4}
    return {
        "ingest": [],
        "refresh": {
            "parent": "models/s@1",
            "model": {"key": "models/s@2"},
            "promoted": "models/s@2" if promote else "models/s@1",
            "decision": decision,
            "train": {"history": history},
        },
        "quantize": [
            {"model": {"key": "models/s-int8@1", "gate_passed": True}, "metrics": metrics},
            {"method": "nf4", "error": "no backend"},
        ],
    }


def test_refresh_markdown_states_the_decision_with_a_plot_and_the_variants() -> None:
    md = refresh_markdown("news", _refresh_out(True))
    assert "**Decision: promoted**" in md and "Promoted now: `models/s@2`" in md
    assert "| earlier data | 20.000 | 20.200 | +1.00% |" in md
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert png and base64.b64decode(png.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "models/s-int8@1: 0.25x bytes on disk, Δppl +0.40%, gate passed" in md
    kept = refresh_markdown("news", _refresh_out(False))
    assert "**Decision: kept the current version**" in kept


def test_stage_summaries_report_a_backend_that_could_not_run() -> None:
    rows = stage_summaries({"quantize": _refresh_out(True)["quantize"]})
    assert rows[1] == ("quantize", "nf4: not run (no backend)")
