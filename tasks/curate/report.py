"""The curation funnel of a curated snapshot: rows in, rows dropped per reason, score histograms.

    funnel(files)                  -> counts (rows, kept, dropped per reason, quality rules, ...)
    write_report(ref, home)        -> <home>/reports/curate/<dataset>/v=<n>/funnel.md + scores.png
    publish_report(report)         -> a Prefect markdown artifact (when inside a flow run)

The PNG is embedded in the artifact as a data URI (Prefect 3.9's image artifact takes only a
URL the browser can fetch, and the UI cannot read a file on the server's disk); the markdown
also gives the file paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.report.markdown import png_data_uri, publish_markdown, pyplot
from warehouse import DatasetRef

MAX_EMBED_BYTES = 400_000  # a bigger PNG is linked, not embedded


def funnel(files: list[str]) -> dict[str, Any]:
    """Counts of a curated snapshot: rows, kept, dropped per reason (in pipeline order), the
    quality rule that fired per rejected row, machine-text and factuality score coverage."""
    con = duckdb.connect()
    try:
        cols = {
            r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [files]).fetchall()
        }
        rows, kept = con.execute(
            "SELECT count(*), count(*) FILTER (keep) FROM read_parquet(?)", [files]
        ).fetchall()[0]
        dropped = dict(
            con.execute(
                "SELECT reason, count(*) FROM read_parquet(?) WHERE NOT keep GROUP BY reason "
                "ORDER BY count(*) DESC, reason",
                [files],
            ).fetchall()
        )
        rules = dict(
            con.execute(
                "SELECT split_part(quality_reason, ':', 1) AS rule, count(*) "
                "FROM read_parquet(?) WHERE reason = 'quality' GROUP BY rule "
                "ORDER BY count(*) DESC, rule",
                [files],
            ).fetchall()
        )
        extra = {}
        if "sample_weight" in cols:
            extra["downweighted"] = con.execute(
                "SELECT count(*) FROM read_parquet(?) WHERE keep AND sample_weight < 1", [files]
            ).fetchall()[0][0]
        scored = con.execute(
            "SELECT count(mgt_score), count(factuality_score) FROM read_parquet(?)", [files]
        ).fetchall()[0]
    finally:
        con.close()
    return {
        "rows": int(rows),
        "kept": int(kept),
        "dropped": {str(k): int(v) for k, v in dropped.items()},
        "quality_rules": {str(k): int(v) for k, v in rules.items()},
        "mgt_scored": int(scored[0]),
        "factuality_scored": int(scored[1]),
        **extra,
    }


def funnel_markdown(title: str, f: dict[str, Any]) -> str:
    lines = [f"# {title}", "", "| step | rows |", "|---|---:|", f"| rows in | {f['rows']:,} |"]
    lines += [f"| dropped: {reason} | {n:,} |" for reason, n in f["dropped"].items()]
    lines.append(f"| **kept** | **{f['kept']:,}** |")
    if f.get("downweighted"):
        lines.append(f"| of which down-weighted (machine-like) | {f['downweighted']:,} |")
    if f["quality_rules"]:
        lines += ["", "| quality rule | rows rejected |", "|---|---:|"]
        lines += [f"| {rule} | {n:,} |" for rule, n in f["quality_rules"].items()]
    lines += [
        "",
        f"mgt_score on {f['mgt_scored']:,} rows, factuality_score on "
        f"{f['factuality_scored']:,} rows.",
    ]
    return "\n".join(lines) + "\n"


def plot_scores(files: list[str], f: dict[str, Any], path: Path, title: str) -> Path:
    """Histograms of mgt_score and factuality_score (kept vs dropped) and per-rule quality
    rejects, as one PNG (matplotlib's Agg backend: no display needed)."""
    plt = pyplot()
    con = duckdb.connect()
    try:
        data = con.execute(
            "SELECT mgt_score, factuality_score, keep FROM read_parquet(?)", [files]
        ).fetchall()
    finally:
        con.close()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, col, name in ((axes[0], 0, "mgt_score"), (axes[1], 1, "factuality_score")):
        kept = [r[col] for r in data if r[col] is not None and r[2]]
        gone = [r[col] for r in data if r[col] is not None and not r[2]]
        if kept or gone:
            ax.hist([kept, gone], bins=30, stacked=True, label=["kept", "dropped"])
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not scored", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name + " (higher = more " + ("machine-like)" if col == 0 else "faithful)"))
        ax.set_ylabel("rows")
    rules = f["quality_rules"]
    if rules:
        axes[2].barh(list(rules)[::-1], list(rules.values())[::-1])
        axes[2].tick_params(axis="y", labelsize=7)
    else:
        axes[2].text(0.5, 0.5, "no quality rejects", ha="center", va="center")
    axes[2].set_title("quality rejects per rule")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(ref: DatasetRef, home: Path) -> dict[str, Any]:
    """Write the funnel (markdown) and the score histograms (PNG) of a curated snapshot under
    `<home>/reports/curate/<dataset>/v=<n>/`; returns the counts and the file paths."""
    files = [str(p) for p in ref.files()]
    f = funnel(files)
    out = Path(home) / "reports" / "curate" / ref.name / f"v={ref.version}"
    out.mkdir(parents=True, exist_ok=True)
    title = f"curate funnel: {ref.key}"
    png = plot_scores(files, f, out / "scores.png", title)
    md = out / "funnel.md"
    md.write_text(funnel_markdown(title, f) + f"\n![score histograms]({png.name})\n")
    return {"funnel": f, "markdown": str(md), "png": str(png), "title": title}


def publish_report(report: dict[str, Any]) -> None:
    """A Prefect markdown artifact with the funnel and the PNG, when inside a flow run."""
    png = Path(report["png"])
    body = funnel_markdown(report["title"], report["funnel"])
    data = png.read_bytes()
    if len(data) <= MAX_EMBED_BYTES:
        body += f"\n![score histograms]({png_data_uri(data)})\n"
    body += f"\nFiles: `{report['markdown']}`, `{report['png']}`\n"
    publish_markdown(report["title"], body, report["title"])


@task(name="curate-report", cache_policy=NO_CACHE)
def report_curation(ref: DatasetRef, home: str) -> dict[str, Any]:
    """Funnel + histograms of a curated snapshot, written to the warehouse and published."""
    report = write_report(ref, Path(home))
    publish_report(report)
    return {k: report[k] for k in ("funnel", "markdown", "png")}
