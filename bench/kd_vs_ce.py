"""KD against CE-only at equal steps, on a demo home's own data, over seeds (issue #18).

    python -m bench.kd_vs_ce --home HOME --seeds 3 [--steps N] [--json FILE]
        [--recipes NAME ...] [--set distill.KEY=VALUE ...]

HOME is the LLM4ALL_HOME of a finished `make demo` (or any home whose DATASET has gated tokens
and logit caches). The bench reads what `llm4all distill -d DATASET` would train on, cuts the
student once as the config says (the cut is measured on training blocks and does not depend on
the seed), then, per seed, trains three copies of that init for the same number of steps of
the same batch size (batches seeded by seed and step):

  KD                 the distill stage's recipe (tasks.distill.distill.train_recipe): the cached
                     teacher distributions, the teacher-summary blocks, the feature terms at the
                     cut (hidden-state and relation, on by default when layers are cut)
  KD response-only   the same without the feature terms (hidden_weight = relation_weight = 0)
  CE only            the reference of `llm4all demo --reference` (tasks.distill.config.CE_ONLY):
                     the data's next tokens alone, no teacher signal of any kind (its batches
                     come from the data's own blocks, without the teacher-written summaries)

Each picks its kept step on the selection blocks and is scored on the test blocks, which no
choice in training saw. Its selection-block perplexity is printed too: choose between runs
(e.g. two student cuts) on that, and report the test figure. `--recipes` runs a subset (KD
always among them, the others are judged against it); `--set` changes the config as
`llm4all distill --set` does, e.g. another student cut (`--set distill.student.kind=width
--set distill.student.kv_heads=2`). Prints every run, then mean ± sd per recipe, and KD against
each other recipe: the per-seed differences (paired: same init and seed), mean ± sd. Training
is timed per run, its final checkpoint included (the teacher load and the cut are shared, not
timed).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATASET = "cnn_dailymail"
# Field updates of DistillConfig per recipe; CE only is tasks.distill.config.CE_ONLY (filled in
# main, which imports lazily).
RECIPES: dict[str, dict[str, Any] | None] = {
    "KD": {},
    "KD response-only": {"hidden_weight": 0.0, "relation_weight": 0.0},
    "CE only": None,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, required=True, help="a demo home (LLM4ALL_HOME)")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--config", default="configs/demo.yaml", help="the config the home ran")
    p.add_argument("--seeds", type=int, default=3, choices=range(1, 101), metavar="N")
    p.add_argument("--steps", type=int, default=None, help="default: the config's max_steps")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES),
                   help="which recipes to train (KD is always one)")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, as `llm4all distill --set` takes")  # fmt: skip
    return p.parse_args(argv)


def spread(values: list[float]) -> dict[str, float]:
    """Mean and sample sd (0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from flows.config import load_config, parse_overrides
    from models.loading import load_causal_lm, model_vocab_size
    from tasks.distill.config import CE_ONLY, DistillError
    from tasks.distill.data import read_blocks
    from tasks.distill.distill import rank_device, train_recipe
    from tasks.distill.evaluate import compare_on_blocks
    from tasks.distill.pending import student_run
    from tasks.distill.students import make_student
    from tasks.distill.train import held_out_loss
    from warehouse import Catalog

    if not (args.home / "catalog.duckdb").exists():
        sys.exit(f"{args.home}: no catalog here (give the LLM4ALL_HOME of a finished demo)")
    overrides = parse_overrides(args.overrides)
    if args.steps is not None:
        overrides["distill.max_steps"] = args.steps
    cfg = load_config(args.config, overrides)
    dcfg = cfg.distill.model_copy(update={"resume": False, "checkpoint_every": 10**9})
    catalog = Catalog(args.home)
    try:
        run = student_run(catalog, args.dataset, cfg.teacher, dcfg)
    except DistillError as e:
        sys.exit(f"{args.home}: {e}")
    teacher = load_causal_lm(cfg.teacher, rank_device(dcfg.device))
    vocab = model_vocab_size(teacher)
    blocks = read_blocks([(v.ref.key, v.ref.files()) for v in run.tokens])
    torch.manual_seed(dcfg.seed)
    init, layers, info = make_student(teacher, dcfg, blocks)
    test = blocks.test()
    print(f"{args.home} {args.dataset}: {len(blocks.train())} train / {len(blocks.selection())} "
          f"selection / {len(test)} test blocks of {blocks.block_size}; student {info['kind']} "
          f"{ {k: v for k, v in info.items() if k != 'layers'} } "
          f"layers {layers}; {dcfg.max_steps} steps x {dcfg.batch_blocks} blocks, lr {dcfg.lr}, "
          f"eval every {dcfg.eval_every}; seeds {list(range(args.seeds))}", flush=True)  # fmt: skip

    names = ["KD", *(n for n in args.recipes if n != "KD")]
    recipes = {n: CE_ONLY if RECIPES[n] is None else RECIPES[n] for n in names}
    rows: list[dict[str, Any]] = []
    teacher_ppl = None
    with tempfile.TemporaryDirectory(prefix="llm4all-kd-vs-ce-") as work:
        for seed in range(args.seeds):
            for name, update in recipes.items():
                run_cfg = dcfg.model_copy(update={**update, "seed": seed})
                student = copy.deepcopy(init)
                t0 = time.perf_counter()
                folder = Path(work) / f"{name}-{seed}"
                train, used, _ = train_recipe(
                    student, teacher, blocks, run.caches, run_cfg, layers, folder,
                    vocab=vocab, progress=False,
                )  # fmt: skip
                wall = time.perf_counter() - t0
                shutil.rmtree(folder, ignore_errors=True)  # ~1 GB of checkpoints per run
                student.eval()
                scores = compare_on_blocks(student, teacher, blocks, test, vocab, dcfg.batch_blocks)
                # The student alone: a teacher pass over the selection blocks would add nothing.
                chosen_on = held_out_loss(
                    student, blocks, blocks.selection(), vocab, dcfg.batch_blocks
                )
                teacher_ppl = scores["teacher_ppl"]
                rows.append({
                    "recipe": name, "seed": seed, "test_ppl": scores["student_ppl"],
                    "selection_ppl": math.exp(chosen_on),
                    "top1": scores["top1_agreement"], "kept_step": train.kept_step,
                    "steps": train.steps, "train_tokens": train.tokens, "train_s": wall,
                    "weights": {k: getattr(used, k) for k in (
                        "kd_weight", "ce_weight", "hidden_weight", "relation_weight",
                        "summary_share")},
                })  # fmt: skip
                r = rows[-1]
                print(f"  {name:16} seed {seed}: test ppl {r['test_ppl']:9.2f}  (selection "
                      f"{r['selection_ppl']:.2f})  top-1 "
                      f"{r['top1']:.3f}  kept step {r['kept_step']}/{r['steps']}  "
                      f"{wall:6.0f} s", flush=True)  # fmt: skip

    summary = {
        name: {
            "ppl": spread([r["test_ppl"] for r in rows if r["recipe"] == name]),
            "top1": spread([r["top1"] for r in rows if r["recipe"] == name]),
        }
        for name in recipes
    }
    by = {(r["recipe"], r["seed"]): r["test_ppl"] for r in rows}
    seeds = range(args.seeds)
    versus = {
        other: spread([by["KD", s] - by[other, s] for s in seeds])
        for other in recipes
        if other != "KD"
    }  # KD - other per seed: negative = KD lower (better)
    out = {
        "home": str(args.home), "dataset": args.dataset, "seeds": args.seeds,
        "steps": dcfg.max_steps, "overrides": overrides, "student": info, "layers": layers,
        "teacher_ppl": teacher_ppl,
        "runs": rows, "summary": summary, "kd_minus": versus,
    }  # fmt: skip
    print(f"\nteacher test ppl {teacher_ppl:.2f}")
    for name, s in summary.items():
        print(f"{name:16} test ppl {s['ppl']['mean']:9.2f} ± {s['ppl']['sd']:7.2f}  "
              f"(x{s['ppl']['mean'] / teacher_ppl:.2f} the teacher)  top-1 "
              f"{s['top1']['mean']:.3f} ± {s['top1']['sd']:.3f}")  # fmt: skip
    for other, d in versus.items():
        share = 100 * d["mean"] / summary[other]["ppl"]["mean"]
        print(f"KD - {other}, paired by seed: {d['mean']:+.2f} ± {d['sd']:.2f} test ppl "
              f"({share:+.1f}% of {other}'s mean)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
