"""What a person reads in the Prefect UI after a run: a markdown summary artifact.

Plain functions that turn a flow's result dict into markdown, plus a helper that publishes it
when (and only when) it runs inside a Prefect flow or task run.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from warehouse.names import artifact_key

log = logging.getLogger(__name__)


def png_data_uri(png: bytes) -> str:
    """A PNG as a data URI for a markdown image: the Prefect UI cannot read files on disk."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact in the Prefect UI (a no-op outside a run); `key` is made a valid
    artifact key (`warehouse.names.artifact_key`)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    try:
        create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)
    except Exception as e:  # the UI report must never fail the run it reports on
        log.warning("could not publish the %s artifact: %s", key, e)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table's lines (every report's tables are made here)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def _rows(header: list[str], rows: list[list[Any]]) -> str:
    return "\n".join(table(header, rows))


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when a report
    draws: every report's plots get it here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def refresh_markdown(dataset: str, out: dict[str, Any]) -> str:
    """The refresh report: data that came in, what each filter dropped, old vs new, decision."""
    parts = [f"# Refresh of `{dataset}`", ""]
    ingested = [i for i in out.get("ingest", []) if i]
    if ingested:
        parts += [
            "## New data",
            _rows(
                ["source", "rows in", "accepted", "already present", "quarantined"],
                [
                    [
                        i["source"],
                        i["rows_in"],
                        i["accepted"],
                        i["already_present"],
                        i["quarantined"],
                    ]
                    for i in ingested
                ],
            ),
            "",
        ]
    versions = (out.get("curate") or {}).get("versions", [])
    if versions:
        rows = []
        for v in versions:
            st = v["stats"]
            rows.append(
                [
                    v["raw"],
                    v["rows"],
                    v["kept"],
                    st.get("exact_dups", 0),
                    st.get("near_dups", 0),
                    st.get("semantic_dups", 0),
                    st.get("low_quality", 0),
                ]
            )
        parts += [
            "## Curation",
            _rows(
                ["raw", "rows", "kept", "exact dup", "near dup", "semantic dup", "low quality"],
                rows,
            ),
            "",
        ]
    r = out.get("refresh") or {}
    if r.get("skipped"):
        parts += ["## Student", f"Nothing trained: {r['skipped']}. Promoted: `{r['promoted']}`."]
        return "\n".join(parts)
    d = r.get("decision") or {}
    if d:
        parts += [
            "## Student",
            f"Continued `{r['parent']}` -> `{r['model']['key']}`.",
            "",
            _rows(
                ["held-out set", "perplexity before", "after", "change"],
                [
                    [
                        "earlier data",
                        f"{d['old_ppl_before']:.3f}",
                        f"{d['old_ppl_after']:.3f}",
                        f"{d['old_regression']:+.2%}",
                    ],
                    [
                        "new data",
                        f"{d['new_ppl_before']:.3f}",
                        f"{d['new_ppl_after']:.3f}",
                        f"{-d['new_gain']:+.2%}",
                    ],
                ],
            ),
            "",
            f"**Decision: {'promoted' if d['promote'] else 'kept the current version'}** — "
            f"{d['reason']}. Promoted now: `{r['promoted']}`.",
            "",
            f"![refresh]({png_data_uri(refresh_png(d, (r.get('train') or {}).get('history') or []))})",
        ]
    quant = [q for q in out.get("quantize") or [] if q.get("model")]
    if quant:
        parts += ["", "## Quantized variants"]
        parts += [f"- {line}" for stage, line in stage_summaries({"quantize": quant})]
    return "\n".join(parts)


def refresh_png(decision: dict[str, Any], history: list[dict[str, Any]]) -> bytes:
    """A PNG: the refresh's training loss, and old/new held-out perplexity before/after."""
    import io

    plt = pyplot()
    fig, (loss_ax, ppl_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
    if history:
        loss_ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train")
        val = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
        if val:
            loss_ax.plot(*zip(*val, strict=True), marker="o", label="held-out (new data)")
        loss_ax.legend(fontsize=8)
    loss_ax.set(title="refresh training loss", xlabel="step")
    sets = ["earlier data", "new data"]
    before = [decision["old_ppl_before"], decision["new_ppl_before"]]
    after = [decision["old_ppl_after"], decision["new_ppl_after"]]
    x = range(len(sets))
    ppl_ax.bar([i - 0.2 for i in x], before, width=0.4, label="before", color="#999")
    ppl_ax.bar([i + 0.2 for i in x], after, width=0.4, label="after", color="#2a7")
    ppl_ax.set_xticks(list(x), sets)
    ppl_ax.set(title="held-out perplexity", ylabel="perplexity")
    ppl_ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def pipeline_markdown(dataset: str, out: dict[str, Any]) -> str:
    """The pipeline report: one line per stage."""
    lines = [f"# Pipeline of `{dataset}`", "", "| stage | result |", "|---|---|"]
    for stage, summary in stage_summaries(out):
        lines.append(f"| {stage} | {summary} |")
    return "\n".join(lines)


def stage_summaries(out: dict[str, Any]) -> list[tuple[str, str]]:
    """(stage, one-line summary) for each stage a pipeline or refresh run went through."""
    rows: list[tuple[str, str]] = []
    for i in out.get("ingest", []):
        made = f"raw v{i['ref']['version']}" if i.get("ref") else "nothing new"
        rows.append(
            (
                "ingest",
                f"{i['source']}: {i['rows_in']:,} in = {i['accepted']:,} accepted + "
                f"{i['already_present']:,} already present + {i['quarantined']:,} quarantined, "
                f"{made}",
            )
        )
    c = out.get("curate") or {}
    if c:
        rows.append(
            (
                "curate",
                f"{c.get('rows', 0):,} rows, {c.get('kept', 0):,} kept"
                if c.get("versions")
                else "nothing to curate",
            )
        )
    tok = (out.get("tokens") or {}).get("refs", [])
    if "tokens" in out:
        line = f"{sum(r['rows'] for r in tok):,} new blocks" if tok else "up to date"
        over = (out.get("tokens") or {}).get("over_budget") or {}
        if over:  # never silent: what the budget left for the next run
            line += "; over tokens.max_documents, left for the next run: " + ", ".join(
                f"{n:,} of {key}" for key, n in over.items()
            )
        rows.append(("tokens", line))
    lg = (out.get("logits") or {}).get("refs", [])
    if "logits" in out:
        rows.append(("logits", f"{len(lg)} new cache(s)" if lg else "up to date"))
    for stage in ("distill", "baseline"):  # baseline: the demo's CE-only student
        dist = out.get(stage)
        if dist:
            m = dist["model"]
            how = "already there" if dist["skipped"] else "trained"
            ratio = m["metrics"].get("ppl_ratio")
            rows.append((stage, f"{m['key']} ({how}), ppl x{ratio} of the teacher"))
    for q in out.get("quantize") or []:
        if q.get("error"):
            rows.append(("quantize", f"{q['method']}: not run ({q['error']})"))
            continue
        m = q.get("metrics") or q["model"]["metrics"]
        verdict = {True: "gate passed", False: "gate FAILED", None: "gate pending"}[
            q["model"]["gate_passed"]
        ]
        rows.append(
            (
                "quantize",
                f"{q['model']['key']}: {m['disk_bytes_ratio']:.2f}x bytes on disk, "
                f"Δppl {m['ppl_delta_pct']:+.2f}%, {verdict}"
                + (" (already there)" if q.get("skipped") else ""),
            )
        )
    ref = out.get("refresh")
    if ref:
        rows.append(
            ("refresh", ref.get("skipped") or (ref.get("decision") or {}).get("reason", ""))
        )
    return rows
