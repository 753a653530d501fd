"""The demo's report: one markdown file with PNGs, every figure from the run that wrote it.

    <home>/reports/demo/<timestamp>/report.md   funnel, training curves, perplexities,
                                     training.png     quantization table, lineage
                                     perplexity.png
                                     quantization.png
                                     scores.png       (copied from the curate report)

`write_demo_report` takes the demo flow's result dict (plain data: the stage results of
ingest, curate, distill, the CE-only baseline and quantize) and the models registry rows.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.curate.quality import repetition_reason
from tasks.report.markdown import pyplot, table


def plot_training(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Training loss and held-out loss per step of each run (name -> history)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, history in runs.items():
        steps = [r["step"] for r in history]
        axes[0].plot(steps, [r["loss"] for r in history], label=name)
        val = [(r["step"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
        if val:
            axes[1].plot(*zip(*val, strict=True), marker="o", label=name)
    axes[0].set_title("training loss (each run's own objective)")
    axes[1].set_title("held-out cross-entropy on the data (nats/token)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_perplexity(values: dict[str, float], path: Path) -> Path:
    """Held-out perplexity per model, log scale (a short CPU run leaves students far above
    their teacher)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color=["#555", "#2a7", "#c63"][: len(names)])
    ax.set_yscale("log")
    ax.bar_label(bars, labels=[f"{values[n]:,.1f}" for n in names])
    ax.set_ylabel("held-out perplexity (log)")
    ax.set_title("teacher vs students, same held-out blocks")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_quantization(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bytes on disk vs perplexity change, and generation speed-up, per method (a variant
    whose runtime could not be timed gets no bar)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for r in rows:
        axes[0].scatter(r["disk_bytes_ratio"], r["ppl_delta_pct"], s=40)
        axes[0].annotate(r["method"], (r["disk_bytes_ratio"], r["ppl_delta_pct"]), fontsize=8)
    axes[0].axhline(0, color="#999", lw=0.8)
    axes[0].set_xlabel("bytes on disk / fp32 folder")
    axes[0].set_ylabel("perplexity change vs fp32 (%)")
    axes[1].bar([r["method"] for r in rows], [r.get("gen_speedup") or 0.0 for r in rows])
    axes[1].axhline(1, color="#999", lw=0.8)
    axes[1].set_ylabel("generation tokens/s vs fp32 PyTorch (x)")
    fig.suptitle("quantized variants of the student, against their fp32 parent")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _times(value: float | None) -> str:
    """A speed ratio, or a dash where the variant's runtime was not there to time it."""
    return "—" if value is None else f"{value:.2f}"


def quant_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics of each quantized variant (a skipped rerun: the registered ones) with its
    gate verdict; variants whose backend could not run are left out (see quant_errors)."""
    rows = []
    for r in results:
        if r.get("model"):
            m = r.get("metrics") or r["model"]["metrics"]
            gate = _gate(r["model"]["gate_passed"])
            rows.append(m | {"gate": gate, "key": r["model"]["key"], "parent": r.get("parent")})
    return rows


def quant_errors(results: list[dict[str, Any]]) -> list[str]:
    return [f"{r['method']}: {r['error']}" for r in results if r.get("error")]


def quantization_section(results: list[dict[str, Any]], folder: Path) -> list[str]:
    """The quantized variants: bytes on disk against the fp32 parent's, Δppl, speed in each
    variant's runtime (a dash where it could not be timed), the gate; and the plot."""
    quant = quant_rows(results)
    lines: list[str] = []
    if quant:
        plot_quantization(quant, folder / "quantization.png")
        lines += table(
            ["method", "bits", "disk MB", "x fp32", "Δppl", "runtime", "forward x", "generate x",
             "gate"],
            [
                [
                    q["method"],
                    q["bits"],
                    f"{q['disk_bytes'] / 1e6:.1f} (fp32 {q['fp32_bytes'] / 1e6:.1f})",
                    f"{q['disk_bytes_ratio']:.2f}",
                    f"{q['ppl_delta_pct']:+.2f}%",
                    q.get("runtime", "pytorch").split(";")[0],
                    _times(q.get("fwd_speedup")),
                    _times(q.get("gen_speedup")),
                    q["gate"],
                ]
                for q in quant
            ],
        )  # fmt: skip
        lines += [
            "",
            f"Each variant against its fp32 parent {quant[0]['parent']} on "
            f"{quant[0]['eval_blocks']} held-out blocks. Bytes: the variant's folder on disk "
            "against the fp32 parent's (a GGUF variant is one file, embeddings included). Δppl: "
            "the variant loaded back through transformers; speed: in its runtime (a GGUF file: "
            "llama.cpp, when llama-cpp-python is installed) against fp32 PyTorch. Gate: Δppl "
            "≤ 1% (8-bit) / 5% (below 8 bits).",
            "",
            "![quantization](quantization.png)",
        ]
    else:
        lines.append("No quantization method configured (`quantize.methods`).")
    return lines + [f"- not run: {e}" for e in quant_errors(results)]


def write_demo_report(
    home: Path, out: dict[str, Any], models: list[dict[str, Any]], machine: str
) -> dict[str, Any]:
    """Write report.md and its PNGs; returns their paths and the five-line summary."""
    folder = home / "reports" / "demo" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    kd, ce = out["distill"], out.get("baseline")
    ev = kd["model"]["metrics"]
    ce_ev = ce["model"]["metrics"] if ce else None
    quant = quant_rows(out.get("quantize", []))
    lines = [
        f"# llm4all demo — {out['dataset']}",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}; wall time "
        f"{out['wall_seconds']:.0f} s. Every figure below was measured in this run.",
        "",
        "## Data funnel",
        "",
    ]
    for v in (out.get("curate") or {}).get("versions", []):
        f = v.get("report", {}).get("funnel", {})
        lines += [f"`{v['raw']}` -> {v['rows']:,} rows, {v['kept']:,} kept.", ""]
        dropped = f.get("dropped") or {}
        if dropped:
            lines += table(["dropped because", "rows"], [[k, f"{n:,}"] for k, n in dropped.items()])
        png = v.get("report", {}).get("png")
        if png and Path(png).exists():
            shutil.copy(png, folder / "scores.png")
            lines += ["", "![score histograms](scores.png)"]
    if not (out.get("curate") or {}).get("versions"):
        lines.append("Nothing new to curate (the corpus was curated by an earlier run).")

    lines += ["", "## Distillation", ""]
    lines += distillation_section(kd, ce, folder)
    lines += ["", "## Quantization", ""]
    lines += quantization_section(out.get("quantize", []), folder)

    lines += ["", "## Lineage", ""]
    lines += table(
        ["model", "parent", "data", "gate", "promoted"],
        [
            [
                m["key"],
                m["parent"],
                ", ".join(m["tokens"]),
                _gate(m["gate_passed"]),
                "yes" if m["promoted"] else "",
            ]
            for m in models
        ],
    )
    versus = (
        f", CE-only student {ce_ev['student_ppl']:.1f} "
        f"({_versus(ev['student_ppl'], ce_ev['student_ppl'])})"
        if ce_ev
        else ""
    )
    summary = [
        f"data: {_kept(out)}",
        f"test perplexity: teacher {ev['teacher_ppl']:.1f}, KD student "
        f"{ev['student_ppl']:.1f} ({ev['ppl_ratio']:.2f}x){versus}",
        f"student: {ev['param_share']:.0%} of the teacher's parameters, "
        f"{ev['student_tokens_per_s']:.0f} vs {ev['teacher_tokens_per_s']:.0f} tokens/s; "
        + summaries_line(ev),
        "quantized: "
        + (
            ", ".join(
                f"{q['method']} {q['disk_bytes_ratio']:.2f}x bytes on disk, "
                f"Δppl {q['ppl_delta_pct']:+.1f}%"
                for q in quant
            )
            or "none"
        ),
        f"wall time {out['wall_seconds']:.0f} s",
    ]
    lines += ["", "## Summary", "", *[f"- {s}" for s in summary]]
    report = folder / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"report": str(report), "folder": str(folder), "summary": summary}


def distillation_section(kd: dict[str, Any], ce: dict[str, Any] | None, folder: Path) -> list[str]:
    """Training curves, the model table (test perplexity, agreement, ROUGE-L, empty and looping
    summaries, speed), what the student is, and three test articles with every model's
    summary."""
    ev = kd["model"]["metrics"]
    ce_ev = ce["model"]["metrics"] if ce else None
    lines: list[str] = []
    runs = {"KD student": (kd.get("train") or {}).get("history") or []}
    if ce:
        runs["CE-only student"] = (ce.get("train") or {}).get("history") or []
    if any(runs.values()):
        plot_training(runs, folder / "training.png")
        lines += ["![training curves](training.png)", ""]
    ppl = {"teacher": ev["teacher_ppl"], "KD student": ev["student_ppl"]}
    if ce_ev:
        ppl["CE-only student"] = ce_ev["student_ppl"]
    plot_perplexity(ppl, folder / "perplexity.png")
    rows = [
        _model_row("teacher", ev, "teacher", agreement=None),
        _model_row(kd["model"]["key"] + " (KD)", ev, "student", ev["top1_agreement"]),
    ]
    if ce and ce_ev:
        rows.append(
            _model_row(ce["model"]["key"] + " (CE only)", ce_ev, "student", ce_ev["top1_agreement"])
        )
    lines += table(
        ["model", "params", "test ppl", "x teacher", "top-1 agreement",
         f"ROUGE-L ({ev.get('rouge_pairs', 0)} test articles)", "empty summaries",
         "looping summaries", "tokens/s"],
        rows,
    )  # fmt: skip
    student = ev.get("student") or {"kind": "layers", "layers": ev.get("layers")}
    sizes = ", ".join(f"{k} {v}" for k, v in student.items() if k not in ("layers", "kind"))
    lines += [
        "",
        f"Student: {student.get('kind')} pruning ({sizes or 'teacher layers'}; teacher layers "
        f"{ev.get('layers')}), {ev['param_share']:.0%} of the teacher's parameters; "
        f"{ev['train_steps']} steps, {ev['train_tokens']:,} training tokens "
        f"({ev.get('summary_blocks', 0)} blocks of teacher-written summaries among them); "
        f"feature weights: hidden {ev.get('hidden_weight', 0)}, relation "
        f"{ev.get('relation_weight', 0)}."
        + (" The CE-only student had the same init, steps and batch size, and no teacher "
           "signal." if ce else " CE-only reference: not run (`llm4all demo --reference`)."),
        "",
        "![perplexity](perplexity.png)",
    ]  # fmt: skip
    failures = summary_failures(ev)
    if failures:
        lines += ["", f"**FAILURE: {failures}.**"]
    if ev.get("examples"):
        lines += ["", "### Three test articles (never trained or selected on), greedy summaries"]
        for i, ex in enumerate(ev["examples"], 1):
            lines += ["", f"**{i}.** {_one_line(ex.get('article', ''))[:300]} …", ""]
            for who, label in (("reference", "human"), ("teacher", "teacher"),
                               ("student", "KD student")):  # fmt: skip
                if who in ex:
                    lines.append(f"- {label}: {_example(str(ex[who]), who != 'reference')}")
    return lines


def summaries_line(ev: dict[str, Any]) -> str:
    """ROUGE-L of student and teacher, and empty summaries (a failure), in one phrase."""
    if not ev.get("rouge_pairs"):
        return "no summaries evaluated"
    ratio = (
        f" ({ev['student_rouge_l'] / ev['teacher_rouge_l']:.2f}x)"
        if ev.get("teacher_rouge_l")
        else ""
    )
    looping = ev.get("student_looping_summaries")
    n = ev.get("rouge_no_repeat_ngram") or 0
    decoding = f" (greedy, no {n}-gram repeated)" if n else " (greedy)"
    return (
        f"ROUGE-L on {ev['rouge_pairs']} test articles{decoding} {ev['student_rouge_l']:.3f} "
        f"vs teacher {ev['teacher_rouge_l']:.3f}{ratio}; "
        f"empty summaries: {ev.get('student_empty_summaries')}"
        + (f", looping: {looping}" if looping is not None else "")
    )


def summary_failures(ev: dict[str, Any]) -> str:
    """'' or what failed: a model that wrote nothing, or looped, for some test article."""
    out = []
    for who, label in (("student", "the KD student"), ("teacher", "the teacher")):
        n = ev.get(f"{who}_empty_summaries")
        if n:
            out.append(f"{label} wrote nothing for {n} of {ev['rouge_pairs']} test articles")
        n = ev.get(f"{who}_looping_summaries")
        if n:
            out.append(f"{label}'s summary loops (repeats itself) for {n} of "
                       f"{ev['rouge_pairs']} test articles")  # fmt: skip
    return "; ".join(out)


def _example(text: str, generated: bool) -> str:
    """A summary as the report shows it: one line, cut at 400 characters; a generated one that
    is empty or loops says so (a failure)."""
    shown = _one_line(text)[:400]
    if not generated:
        return shown
    if not shown:
        return "**(empty: FAILURE, nothing written)**"
    why = repetition_reason(text)
    return f"{shown} **(loops: FAILURE, {why})**" if why else shown


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _model_row(label: str, ev: dict[str, Any], who: str, agreement: float | None) -> list[str]:
    """One row of the distillation table from an evaluation's `teacher_*` or `student_*`."""
    empty = ev.get(who + "_empty_summaries")
    looping = ev.get(who + "_looping_summaries")
    return [
        label,
        f"{ev[who + '_params']:,}",
        f"{ev[who + '_ppl']:.2f}",
        f"{ev[who + '_ppl'] / ev['teacher_ppl']:.2f}",
        f"{agreement:.1%}" if agreement is not None else "-",
        _fmt(ev.get(who + "_rouge_l")),
        "-" if empty is None else (f"**{empty} (FAILURE)**" if empty else "0"),
        "-" if looping is None else (f"**{looping} (FAILURE)**" if looping else "0"),
        f"{ev[who + '_tokens_per_s']:.0f}",
    ]


def _versus(kd: float, ce: float) -> str:
    change = kd / ce - 1
    return f"KD {abs(change):.0%} {'lower' if change < 0 else 'higher'} at equal steps"


def _fmt(x: float | None) -> str:
    return f"{x:.3f}" if x is not None else "-"


def _gate(passed: bool | None) -> str:
    return {True: "passed", False: "failed", None: "pending"}[passed]


def _kept(out: dict[str, Any]) -> str:
    c = out.get("curate") or {}
    if not c.get("versions"):
        return "curated earlier"
    return f"{c['rows']:,} rows curated, {c['kept']:,} kept"
