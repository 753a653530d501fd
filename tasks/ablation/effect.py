"""Does curation pay? Students trained with one recipe: on the raw rows, on the curated rows,
and (for reference) on the curated rows for the raw step count and on the rows with no noise.

    corpus (known noise) ──curate (the product's filters)──▶ kept rows
       │ one block per pair (article lead + summary, loss on the summary)
       ▼ teacher targets cached once per distinct block (the curated blocks are a subset)
    raw student:     every row,  `epochs` passes ┐ same init (cut from the teacher), recipe
    curated student: kept rows,  `epochs` passes ┘ (KD + CE), batch size, lr schedule
       │ keep-best on the held-out selection split; every figure on the test split
       ▼ test perplexity, factual preference, ROUGE-L, machine-text share; `seeds` runs
    cost: teacher tokens (its logit cache) + student tokens (its training), per student

The curated student costs less because it has fewer rows to pass over; the equal-steps student
(the curated rows for the raw student's step count) is printed for completeness. Where the
corpus labels its noise, the oracle student trains on the rows that carry none, the same epochs:
what perfect filters would buy, which tells weak filters apart from a recipe or a size at which
no curation can pay.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.loading_config import ModelSpec
from tasks.ablation.config import AblationConfig
from tasks.ablation.corpus import labelled
from tasks.curate.config import DedupConfig
from tasks.logits.config import LogitCacheConfig

log = logging.getLogger(__name__)
ARMS = ("raw", "curated", "curated_equal_steps", "oracle")
MEASURED = ("raw", "curated")  # the comparison itself; the other arms are for reference
POOL = {"raw": "raw", "curated": "curated", "curated_equal_steps": "curated", "oracle": "oracle"}
"""The rows each student trains on."""


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaNs left out."""
    v = np.asarray([x for x in values if x == x], np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


class Clock:
    """Wall and CPU seconds per stage of one run."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        prev = self.stages.get(name, {"wall_s": 0.0, "cpu_s": 0.0})
        self.stages[name] = {
            "wall_s": round(prev["wall_s"] + wall - self._wall, 1),
            "cpu_s": round(prev["cpu_s"] + cpu - self._cpu, 1),
        }
        self._wall, self._cpu = wall, cpu


def student_init(teacher: Any, cfg: AblationConfig, blocks: Any) -> tuple[Any, dict[str, Any]]:
    """(the shared init, what was cut: kind, teacher layers, sizes). The init is cut as
    `cfg.student` says (the product's make_student; a depth or width cut calibrates on the
    first corpus blocks), fp32, trainable; the embedding / output matrix frozen unless
    `train_embeddings`."""
    from tasks.distill.config import DistillConfig
    from tasks.distill.students import make_student

    n = int(teacher.config.num_hidden_layers)
    layers = [i for i in cfg.layers if i < n] or [0]
    dcfg = DistillConfig(student=cfg.student, layers=layers, batch_blocks=cfg.batch_blocks)
    student, _, info = make_student(teacher, dcfg, blocks)
    if not cfg.train_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)
        student.get_output_embeddings().weight.requires_grad_(False)
    return student, info


def training_pools(
    corpus: list[dict[str, Any]], valid: list[int], kept: list[int], has_target: np.ndarray
) -> dict[str, np.ndarray]:
    """The corpus rows each student trains on (those whose block has summary tokens to learn):
    raw, every valid row; curated, the rows the filters kept; oracle, where the rows label their
    noise (a `noise` list on every row) and some carry none, those rows."""
    pools = {
        "raw": np.asarray([i for i in valid if has_target[i]], np.int64),
        "curated": np.asarray([i for i in kept if has_target[i]], np.int64),
    }
    if labelled(corpus):
        clean = [i for i in pools["raw"] if not corpus[i]["noise"]]
        if clean:
            pools["oracle"] = np.asarray(clean, np.int64)
    return pools


def oracle_plan(
    corpus: list[dict[str, Any]], pools: dict[str, np.ndarray], steps: dict[str, int], seeds: int
) -> str:
    """The progress line's word on the oracle student: its steps, or why there is none."""
    if "oracle" in pools and seeds > 0:
        return f", oracle {steps['oracle']}"
    why = (
        "oracle_seeds is 0" if seeds <= 0
        else "no row is clean" if labelled(corpus)
        else "the corpus does not label its noise"
    )  # fmt: skip
    return f"; no oracle student ({why})"


def projected_seconds(done: list[tuple[int, float]], steps: int) -> float:
    """Seconds a run of `steps` steps will take (training and evaluation), from the finished
    runs' (steps, seconds): a least-squares line when they have two step counts or more (a run
    has a fixed cost, its evaluations, besides the per-step one), else in proportion."""
    x = np.asarray([s for s, _ in done], float)
    y = np.asarray([t for _, t in done], float)
    if len(set(x.tolist())) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        return float(max(slope * steps + intercept, 0.0))
    return float(y.mean() / x.mean() * steps)


def past_deadline(
    elapsed_s: float, done: list[tuple[int, float]], steps: int, deadline_minutes: float | None
) -> float | None:
    """The projected end (minutes from the start) of a run of `steps` steps that would end past
    `deadline_minutes`; None when it fits (or there is no deadline, or nothing to project from)."""
    if deadline_minutes is None or not done:
        return None
    end = (elapsed_s + projected_seconds(done, steps)) / 60
    return end if end > deadline_minutes else None


def distill_config(cfg: AblationConfig, steps: int, seed: int, device: str, n_sel: int) -> Any:
    from tasks.distill.config import DistillConfig

    return DistillConfig(
        max_steps=steps, batch_blocks=cfg.batch_blocks, lr=cfg.lr,
        warmup_steps=round(cfg.warmup_share * steps), eval_every=max(1, steps // cfg.evals),
        eval_blocks=max(n_sel, 1), kd_weight=cfg.kd_weight, ce_weight=cfg.ce_weight,
        hidden_weight=0.0, relation_weight=0.0, keep="best", seed=seed, resume=False,
        checkpoint_every=10**9, keep_checkpoints=1, device=device,
    )  # fmt: skip


def run_ablation(
    corpus: list[dict[str, Any]], heldout: list[dict[str, Any]],
    calibration: list[dict[str, Any]], cfg: AblationConfig, dedup: DedupConfig,
    teacher_spec: ModelSpec, logits: LogitCacheConfig | None = None, *,
    progress: bool = True, say: Callable[[str], None] = print, started: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The whole comparison; returns every figure (see `summary` for the one-object form).
    `started`: the process's start (time.monotonic), which `cfg.deadline_minutes` counts from;
    None: now."""
    import torch

    from models.loading import load_causal_lm, load_tokenizer
    from tasks.ablation import evaluate as ev
    from tasks.ablation.blocks import make_blocks, write_cache
    from tasks.ablation.curation import calibrate, curate_rows, curation_config, filter_report
    from tasks.curate.mgt import load_scorer
    from tasks.distill.data import CacheReader
    from tasks.distill.train import train_student

    clock = Clock()
    started = time.monotonic() if started is None else started
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    logits = logits or LogitCacheConfig(mode="sampled", samples=24, shard_blocks=64)
    corpus = corpus[: cfg.max_rows] if cfg.max_rows else corpus
    heldout = heldout[: cfg.max_heldout] if cfg.max_heldout else heldout
    work = Path(tempfile.mkdtemp(prefix="llm4all-ablation-"))
    try:
        # ---------------------------------------------------------------- curation
        say(f"[1/5] curation: {len(corpus)} rows, the product's filters "
            f"({', '.join(curation_config(dedup).filters())})")  # fmt: skip
        dedup, calib = calibrate(
            curation_config(dedup), calibration, teacher_spec, work, cfg.mgt_fpr,
            cfg.factuality_fpr,
        )  # fmt: skip
        clock.lap("calibration")
        decisions, curated_run = curate_rows(corpus, dedup, teacher_spec, work)
        clock.lap("curation")
        filters = filter_report(corpus, decisions)
        valid = [i for i, d in enumerate(decisions) if not str(d["reason"]).startswith("invalid")]
        kept = [i for i, d in enumerate(decisions) if d["keep"]]
        say(f"      kept {len(kept)} of {len(valid)} rows; thresholds: machine text "
            f"{dedup.mgt.threshold:.4g}{_rate(calib['mgt'])}, factuality "
            f"{dedup.factuality.threshold:.4g}{_rate(calib['factuality'])}")  # fmt: skip

        # ---------------------------------------------------------------- blocks + teacher cache
        tokenizer = load_tokenizer(teacher_spec)
        teacher = load_causal_lm(teacher_spec, device).eval()
        vocab = int(teacher.get_output_embeddings().weight.shape[0])
        blocks, held_split = make_blocks(corpus, heldout, tokenizer, cfg)
        has_target = blocks.loss_mask[:, 1:].any(axis=1)
        pools = training_pools(corpus, valid, kept, has_target)
        test_rows = [r for r, s in zip(heldout, held_split, strict=True) if s == "test"]
        n_sel = len(blocks.selection())
        say(f"[2/5] teacher logits: {len(corpus)} blocks of {cfg.block_size} tokens "
            f"(cached once; the curated student reads {len(pools['curated'])} of them); "
            f"held out: {n_sel} selection + {len(blocks.test())} test pairs")  # fmt: skip
        write_cache(work / "cache", teacher, blocks.input_ids[: len(corpus)], logits, progress)
        caches = [CacheReader(work / "cache")]
        clock.lap("teacher_logits")

        # ---------------------------------------------------------------- reference points
        say("[3/5] test set: faithful vs corrupted pairs, prompts; teacher and init scored")
        pairs = ev.preference_pairs(test_rows, tokenizer, cfg)
        prompts = ev.summary_prompts(test_rows, tokenizer, cfg)
        references = [r["summary"] for r in test_rows]
        scorer = load_scorer(dedup.mgt, teacher_spec)
        init, cut = student_init(teacher, cfg, blocks)
        reference = {
            "teacher": ev.evaluate(teacher, blocks, pairs, prompts, references, tokenizer, cfg,
                                   scorer, dedup),
            "init": ev.evaluate(init, blocks, pairs, prompts, references, tokenizer, cfg,
                                scorer, dedup),
        }  # fmt: skip
        human = ev.machine_share(references, scorer, dedup)
        reference["human_summaries"] = {"machine_share": human[0], "machine_scored": human[1]}
        clock.lap("reference")

        # ---------------------------------------------------------------- the students
        steps = {
            arm: max(1, math.ceil(cfg.epochs * len(pool) / cfg.batch_blocks))
            for arm, pool in pools.items()
        }
        steps["curated_equal_steps"] = steps["raw"]
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        plan = [(s, a) for s in range(cfg.seeds) for a in MEASURED]
        plan += [(s, "curated_equal_steps") for s in range(min(cfg.equal_steps_seeds, cfg.seeds))]
        if "oracle" in pools:
            plan += [(s, "oracle") for s in range(min(cfg.oracle_seeds, cfg.seeds))]
        say(f"[4/5] students: {len(plan)} runs; {cfg.epochs:g} epoch(s) x {cfg.batch_blocks} "
            f"blocks/step -> raw {steps['raw']} steps, curated {steps['curated']}"
            f"{oracle_plan(corpus, pools, steps, cfg.oracle_seeds)}")  # fmt: skip
        done: list[tuple[int, float]] = []  # (steps, seconds) of each finished run
        skipped: list[str] = []
        for k, (seed, arm) in enumerate(plan):
            late = None if arm in MEASURED else past_deadline(
                time.monotonic() - started, done, steps[arm], cfg.deadline_minutes
            )  # fmt: skip
            if late is not None:  # a reference student gives way to the deadline
                skipped.append(f"{arm} seed {seed}")
                say(
                    f"      run {k + 1}/{len(plan)} {arm} seed {seed}: skipped, projected to "
                    f"end at {late:.1f} min, past deadline_minutes {cfg.deadline_minutes:g}"
                )
                continue
            run_start = time.monotonic()
            pool = pools[POOL[arm]]
            student = copy.deepcopy(init)
            dcfg = distill_config(cfg, steps[arm], seed, device, n_sel)
            res = train_student(
                student, blocks, dcfg, vocab_size=vocab, out_dir=work / "runs" / f"{arm}-{seed}",
                caches=caches, train_pool=pool, progress=progress,
            )  # fmt: skip
            clock.lap("training")
            scores = ev.evaluate(student, blocks, pairs, prompts, references, tokenizer, cfg,
                                 scorer, dedup)  # fmt: skip
            clock.lap("evaluation")
            scores |= {
                "seed": seed, "steps": res.steps, "kept_step": res.kept_step,
                "student_tokens": res.tokens, "train_seconds": res.seconds,
                "best_selection_loss": res.best_val_loss,
            }  # fmt: skip
            runs[arm].append(scores)
            done.append((steps[arm], time.monotonic() - run_start))
            shutil.rmtree(work / "runs" / f"{arm}-{seed}", ignore_errors=True)
            say(f"      run {k + 1}/{len(plan)} {arm} seed {seed}: test ppl {scores['ppl']:.2f}, "
                f"pref {scores['pref']:.3f}, ROUGE-L {scores['rouge_l']:.3f}, machine share "
                f"{scores['machine_share']:.3f} ({res.seconds:.0f} s)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    say("[5/5] summary")
    block_tokens = cfg.block_size
    out: dict[str, Any] = {"seeds": cfg.seeds}
    for arm in ARMS:
        if not runs[arm]:
            continue
        rows = len(pools[POOL[arm]])
        stats: dict[str, Any] = {
            "rows": rows, "steps": steps[arm], "seeds": len(runs[arm]), "runs": runs[arm]
        }  # fmt: skip
        for key, name in (("ppl", "ppl"), ("pref", "pref"), ("rouge_l", "rouge_l"),
                          ("machine_share", "machine_share")):  # fmt: skip
            stats[f"{name}_mean"], stats[f"{name}_sd"] = mean_sd([r[key] for r in runs[arm]])
        stats["teacher_tokens"] = rows * block_tokens
        stats["student_tokens"] = int(np.mean([r["student_tokens"] for r in runs[arm]]))
        stats["cost_tokens"] = stats["teacher_tokens"] + stats["student_tokens"]
        out[arm] = stats
    raw, cur = out["raw"], out["curated"]
    out["verdict"] = verdict(raw, cur)
    if "oracle" in out:  # the same bars for perfect filters
        out["oracle_verdict"] = verdict(raw, out["oracle"])
    out["skipped"] = skipped  # reference runs past cfg.deadline_minutes
    out["curation"] = {
        **curated_run, "filters_on": dedup.filters(), "thresholds": calib, "filters": filters,
        "noise": {k: sum(k in r.get("noise", []) for r in corpus)
                  for k in ("duplicate", "machine", "unfaithful")} if filters else None,
        "scoring_teacher_tokens": _scoring_tokens(corpus, tokenizer, dedup),
    }  # fmt: skip
    out["reference"] = reference
    out["setup"] = {
        "corpus_rows": len(corpus), "heldout": len(heldout), "selection": n_sel,
        "test": len(test_rows), "preference_pairs": len(pairs["kinds"]),
        "block_size": cfg.block_size, "student": cut,
        "student_params": sum(p.numel() for p in init.parameters()),
        "trainable_params": sum(p.numel() for p in init.parameters() if p.requires_grad),
        "teacher": teacher_spec.path, "device": device, "config": cfg.model_dump(),
        "logits": logits.params(), "threads": torch.get_num_threads(),
    }  # fmt: skip
    out["seconds"] = clock.stages
    out["wall_seconds"] = round(sum(s["wall_s"] for s in clock.stages.values()), 1)
    out["cpu_seconds"] = round(sum(s["cpu_s"] for s in clock.stages.values()), 1)
    return out


def _scoring_tokens(corpus: list[dict[str, Any]], tokenizer: Any, dedup: DedupConfig) -> int:
    """Teacher tokens the machine-text scorer spent on the corpus (a cost of curating)."""
    if not dedup.mgt.enabled:
        return 0
    return sum(
        min(len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]), dedup.mgt.max_tokens)
        for r in corpus
    )


def verdict(raw: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars: the curated student better on test perplexity and on factual
    preference, each by more than 2 sd across seeds (the larger of the two students' sd), at
    <= 0.8x the raw one's teacher + student tokens."""
    ppl_gap = raw["ppl_mean"] - cur["ppl_mean"]
    pref_gap = cur["pref_mean"] - raw["pref_mean"]
    ppl_sd = max(raw["ppl_sd"], cur["ppl_sd"])
    pref_sd = max(raw["pref_sd"], cur["pref_sd"])
    cost = cur["cost_tokens"] / raw["cost_tokens"]
    return {
        "ppl_gap": ppl_gap, "ppl_gap_in_sd": ppl_gap / ppl_sd if ppl_sd > 0 else math.inf,
        "pref_gap": pref_gap, "pref_gap_in_sd": pref_gap / pref_sd if pref_sd > 0 else math.inf,
        "cost_ratio": cost,
        "ppl_better": bool(ppl_gap > 2 * ppl_sd), "pref_better": bool(pref_gap > 2 * pref_sd),
        "cheaper": bool(cost <= 0.8),
    }  # fmt: skip


def _rate(threshold: dict[str, Any]) -> str:
    """' (target 5%: 90% sure 2.3%-12.4% of clean rows)' for a calibrated threshold."""
    if not threshold.get("fpr_interval_90"):
        return ""
    lo, hi = threshold["fpr_interval_90"]
    return f" (target {threshold['fpr']:.0%}: 90% sure {lo:.1%}-{hi:.1%} of clean rows)"


def summary(out: dict[str, Any]) -> dict[str, Any]:
    """The one JSON object of `--json`: {"seeds", "raw", "curated", ...} without per-run
    detail."""
    keys = ("rows", "steps", "seeds", "ppl_mean", "ppl_sd", "pref_mean", "pref_sd", "rouge_l_mean",
            "rouge_l_sd", "machine_share_mean", "machine_share_sd", "teacher_tokens",
            "student_tokens", "cost_tokens")  # fmt: skip
    res = {"seeds": out["seeds"]}
    for arm in ARMS:
        if arm in out:
            res[arm] = {k: out[arm][k] for k in keys}
    res["verdict"] = out["verdict"]
    if "oracle_verdict" in out:
        res["oracle_verdict"] = out["oracle_verdict"]
    if out.get("skipped"):
        res["skipped"] = out["skipped"]
    res["curation"] = {
        k: out["curation"][k] for k in ("kept", "rows", "filters_on", "thresholds", "filters")
    }
    res["wall_seconds"], res["cpu_seconds"] = out["wall_seconds"], out["cpu_seconds"]
    return res
