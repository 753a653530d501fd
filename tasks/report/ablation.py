"""The report of `llm4all demo --ablation`: does curation pay? One markdown file and a plot,
every figure from the run that wrote it (tasks/ablation/run.curation_effect's dict).

    <home>/reports/ablation/<timestamp>/report.md    students table, the issue's three bars,
                                         ablation.png    each filter against the known noise
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.report.markdown import pyplot, table

HEADER = ["student", "rows", "steps", "seeds", "test ppl", "factual preference", "ROUGE-L",
          "machine share", "teacher + student tokens"]  # fmt: skip
ARMS = {"raw": "raw rows", "curated": "curated rows", "curated_equal_steps": "curated, raw's steps",
        "oracle": "oracle: no known noise"}  # fmt: skip
COLORS = {"raw": "#c63", "curated": "#2a7", "curated_equal_steps": "#2a7", "oracle": "#47b"}


def plot_ablation(out: dict[str, Any], path: Path) -> Path:
    """Test perplexity and factual preference of each student (mean ± sd over seeds, each
    seed a dot), the teacher as a dashed line; and what each student cost in tokens."""
    plt = pyplot()
    arms = [a for a in ARMS if a in out]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    teacher = out["reference"]["teacher"]
    for ax, key, title in (
        (axes[0], "ppl", "test perplexity of the human summaries (lower is better)"),
        (axes[1], "pref", "factual preference (higher is better)"),
    ):
        for i, arm in enumerate(arms):
            s = out[arm]
            ax.bar(
                i,
                s[f"{key}_mean"],
                yerr=s[f"{key}_sd"],
                capsize=6,
                color=COLORS[arm],
            )
            ax.plot([i] * len(s["runs"]), [r[key] for r in s["runs"]], "k.", alpha=0.6)
        ax.axhline(teacher[key], color="#555", ls="--", label="teacher")
        if key == "pref":
            ax.axhline(0.5, color="#999", ls=":", label="chance")
        ax.set_xticks(range(len(arms)), [ARMS[a] for a in arms], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    cost = [out[a]["cost_tokens"] for a in arms]
    axes[2].bar(range(len(arms)), cost, color=[COLORS[a] for a in arms])
    axes[2].set_xticks(range(len(arms)), [ARMS[a] for a in arms], fontsize=8)
    axes[2].set_title("teacher + student tokens (cost)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_ablation_report(home: Path, out: dict[str, Any], machine: str) -> dict[str, Any]:
    """Write report.md and ablation.png; returns their paths and the summary lines."""
    folder = home / "reports" / "ablation" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    plot_ablation(out, folder / "ablation.png")
    setup, v = out["setup"], out["verdict"]
    arms = [a for a in ARMS if a in out]
    rows = [
        [ARMS[a], out[a]["rows"], out[a]["steps"], out[a]["seeds"], _pm(out[a], "ppl", 2),
         _pm(out[a], "pref", 3), _pm(out[a], "rouge_l", 3),
         f"{out[a]['machine_share_mean']:.3f}", f"{out[a]['cost_tokens']:,}"]
        for a in arms
    ]  # fmt: skip
    for name in ("teacher", "init"):
        ref = out["reference"][name]
        rows.append([name if name == "teacher" else "untrained init", "", "", "",
                     f"{ref['ppl']:.2f}", f"{ref['pref']:.3f}", f"{ref['rouge_l']:.3f}",
                     f"{ref['machine_share']:.3f}", ""])  # fmt: skip
    lines = [
        "# llm4all demo --ablation — does curation pay?",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}; profile `{out['profile']}`, "
        f"wall time {out['total_wall_seconds']:.0f} s. Every figure below was measured in this "
        "run.",
        "",
        f"Every student is cut the same way from the teacher ({_student(setup['student'])}) "
        f"and trained with the same recipe, batch size and {setup['config']['epochs']:g} "
        f"epochs: the raw one on all {out['raw']['rows']} corpus rows, the curated one on the "
        f"{out['curated']['rows']} the product's filters keep (any other row of the table is "
        "for reference). Keep-best chose on "
        f"{setup['selection']} held-out selection articles; every figure is on "
        f"{setup['test']} test articles it never saw; mean ± sd over each student's seeds.",
        "",
        *table(HEADER, rows),
        "",
        "![raw vs curated](ablation.png)",
        "",
        "## Verdict",
        "",
        *table(["bar", "measured", "met"], _bars(v, "curated")),
    ]
    if "oracle_verdict" in out:
        lines += [
            "", f"The oracle student ({out['oracle']['rows']} rows that carry no known noise, the "
            "same epochs) against the raw one, the same bars: what perfect filters would buy.",
            "",
            *table(["bar", "measured", "met"], _bars(out["oracle_verdict"], "oracle")),
        ]  # fmt: skip
    if out.get("capped"):
        lines += ["", f"CAPPED by the profile's budget: {out['capped']}."]
    if out.get("skipped"):
        lines += ["", "SKIPPED, projected past the profile's deadline_minutes: "
                  f"{', '.join(out['skipped'])}."]  # fmt: skip
    filters = out["curation"].get("filters") or {}
    if filters:
        lines += ["", "## The filters against the known noise", ""]
        lines += table(
            ["filter", "meant for", "dropped", "precision", "recall"],
            [[f["filter"], f.get("target") or "—", f["dropped"], _f(f.get("precision")),
              _f(f.get("recall"))] for f in filters["filters"]],
        )  # fmt: skip
    lines += ["", "Seconds per stage: " + ", ".join(
        f"{k} {s['wall_s']:.0f}" for k, s in out["seconds"].items())]  # fmt: skip
    summary = [
        f"students: {out['raw']['rows']} raw vs {out['curated']['rows']} curated rows, "
        f"{out['seeds']} seeds, {setup['test']} test articles",
        f"test ppl: raw {_pm(out['raw'], 'ppl', 1)}, curated {_pm(out['curated'], 'ppl', 1)} "
        f"(teacher {out['reference']['teacher']['ppl']:.1f})",
        f"factual preference: raw {_pm(out['raw'], 'pref', 3)}, curated "
        f"{_pm(out['curated'], 'pref', 3)}",
        f"cost: {v['cost_ratio']:.2f}x the raw student's tokens; bars met: "
        f"ppl {_yes(v['ppl_better'])}, preference {_yes(v['pref_better'])}, "
        f"cost {_yes(v['cheaper'])}",
        f"wall time {out['total_wall_seconds']:.0f} s",
    ]
    report = folder / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"report": str(report), "folder": str(folder), "summary": summary}


def _bars(v: dict[str, Any], who: str) -> list[list[str]]:
    """The issue's three bars for one student against the raw one (effect.verdict's dict)."""
    return [
        [f"{who} better on test perplexity by > 2 sd",
         f"{v['ppl_gap']:+.2f} ({v['ppl_gap_in_sd']:+.2f} sd)", _yes(v["ppl_better"])],
        [f"{who} better on factual preference by > 2 sd",
         f"{v['pref_gap']:+.3f} ({v['pref_gap_in_sd']:+.2f} sd)", _yes(v["pref_better"])],
        [f"{who} costs ≤ 0.8× the raw one's tokens", f"{v['cost_ratio']:.2f}×",
         _yes(v["cheaper"])],
    ]  # fmt: skip


def _pm(stats: dict[str, Any], key: str, digits: int) -> str:
    return f"{stats[f'{key}_mean']:.{digits}f} ± {stats[f'{key}_sd']:.{digits}f}"


def _f(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:.2f}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _student(cut: dict[str, Any]) -> str:
    if cut.get("kind") == "width":
        sizes = ", ".join(f"{k} {cut[k]}" for k in ("hidden_size", "intermediate_size",
                                                     "kv_heads") if k in cut)  # fmt: skip
        return f"width cut: {sizes}, {len(cut['layers'])} layers"
    return f"{cut.get('kind')} cut: teacher layers {cut.get('layers')}"
