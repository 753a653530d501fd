"""The logit cache's CUDA path: a bf16 teacher forward, sparsified on the GPU, written to shards.

    python -m bench.gpu_logits [--blocks 64] [--batch-blocks 16] [--block-size 1024]

The teacher has SmolLM2-135M's shape (vocab 49,152, 30 layers, hidden 576) with random
weights, so the check needs nothing but torch and transformers on the GPU machine. It runs the
same functions as tasks/logits/cache.py (topk_targets / sampled_targets / write_shard) and reports,
in one run: the bare forward's tokens/s, the time to sparsify and write as a share of it, the
bytes/token of each format, and whether a seeded CUDA sampler repeats itself (resume needs it).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.logit_cache import concat, sampled_targets, topk_targets, write_shard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=64)
    ap.add_argument("--batch-blocks", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=1024)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for the GPU path")
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    cfg = llama_config(
        49_152,
        hidden=576,
        ffn=1536,
        layers=30,
        heads=9,
        kv_heads=3,
        positions=2048,
        tie_word_embeddings=True,
    )  # fmt: skip  (SmolLM2-135M's shape)
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    vocab = cfg.vocab_size
    g = torch.Generator(device="cuda").manual_seed(0)
    blocks = torch.randint(0, vocab, (args.blocks, args.block_size), device="cuda", generator=g)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")

    def run(mode: str | None, write: bool = True) -> tuple[float, int]:
        out = Path(tempfile.mkdtemp(prefix="gpu-logits-"))
        stored = 0
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s, b in enumerate(range(0, args.blocks, args.batch_blocks)):
            batch = blocks[b : b + args.batch_blocks]
            with torch.inference_mode():
                logits = teacher(input_ids=batch).logits[..., :vocab].flatten(0, 1)
            if mode == "topk":
                targets = topk_targets(logits, 32, vocab)
            elif mode == "sampled":
                gen = torch.Generator(device="cuda").manual_seed(s)
                targets = sampled_targets(logits, 24, vocab, gen)
            else:
                torch.cuda.synchronize()
                continue
            if write:
                write_shard(out, s, concat([targets]))
            stored += targets.nbytes()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        shutil.rmtree(out, ignore_errors=True)
        return seconds, stored

    run(None)  # warm-up: kernels, allocator
    tokens = blocks.numel()
    bare, _ = run(None)
    rows = [("bare bf16 forward", bare, None, None)]
    for mode in ("topk", "sampled"):
        label = f"{mode} ({'k=32' if mode == 'topk' else 'S=24'})"
        seconds, stored = run(mode, write=False)
        rows.append((f"{label}, no write", seconds, stored, None))
        seconds, stored = run(mode)
        rows.append((label, seconds, stored, None))
    print(f"{'run':<30}{'tokens/s':>12}{'overhead':>10}{'bytes/token':>13}")
    for name, seconds, stored, _ in rows:
        overhead = "" if stored is None else f"{100 * (seconds / bare - 1):.1f}%"
        bpt = "" if stored is None else f"{stored / tokens:.1f}"
        print(f"{name:<30}{tokens / seconds:>12,.0f}{overhead:>10}{bpt:>13}")

    with torch.inference_mode():
        logits = teacher(input_ids=blocks[:2]).logits[..., :vocab].flatten(0, 1)
    a = sampled_targets(logits, 24, vocab, torch.Generator(device="cuda").manual_seed(7))
    b = sampled_targets(logits, 24, vocab, torch.Generator(device="cuda").manual_seed(7))
    same = np.array_equal(a.ids, b.ids) and np.array_equal(a.values, b.values)
    top = topk_targets(logits, 32, vocab)
    print(f"seeded CUDA sampler repeats itself: {same}")
    print(
        f"ids dtype {top.ids.dtype}; topk mass per position in [{top.mass().min():.4f}, "
        f"{top.mass().max():.4f}]; sampled mass {np.unique(a.mass())}"
    )


if __name__ == "__main__":
    main()
