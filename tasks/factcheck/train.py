"""Train a factuality model from (document, summary) pairs — `train_factuality`, the work of
`llm4all train-factuality` (and of bench/factuality.py, so the bench measures this code).

    pairs ──split by document hash──▶ train / dev / gate documents (disjoint)
    train ──synth.sentence_examples──▶ classifier (classifier.train; best dev-AUROC step)
    dev   ──synth.pair_examples──▶ features ──▶ stacker (stack.fit, weights sign-bounded)
    gate  ──synth.pair_examples──▶ features ──▶ gate AUROC (the registry's gate checks it)

The user's summaries are assumed faithful; only rule-made variants are negatives. The gate is
a check that training worked (a broken run lands near 0.5), not a measure of how the score
does on real hallucinations: bench/factuality.py measures that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.factcheck import stack, synth
from tasks.factcheck.config import FactcheckConfig, FactcheckError
from tasks.factcheck.scorer import (
    CLASSIFIER_FEATURES,
    SETTINGS_FILE,
    STACKER_FILE,
    pair_features,
)
from tasks.factcheck.text import CHEAP_FEATURE_SIGNS, CHEAP_FEATURES

log = logging.getLogger(__name__)

GENERATOR_VERSION = "synth-2"  # bump when synth.py's rules change: it is part of the run key
PER_ARTICLE = 2  # sentence examples (positive + negative each) drawn per training article
MIN_DOCUMENTS = 2  # per part: fewer cannot make pairs with another article's sentences
# The classifier's aggregates are probabilities (logits) of "supported": higher never counts
# against a summary, like the text features' own signs.
STACKER_SIGNS = {**CHEAP_FEATURE_SIGNS, **dict.fromkeys(CLASSIFIER_FEATURES, 1)}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def split_by_document(
    pairs: list[dict[str, Any]], dev_share: float, gate_share: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, dev, gate) by a hash of the document: stable across runs, and two summaries of
    one document never land in two parts."""
    parts: tuple[list, list, list] = ([], [], [])
    for p in pairs:
        h = int(hashlib.sha256(p["document"].encode()).hexdigest()[:8], 16) / 16**8
        parts[2 if h < gate_share else 1 if h < gate_share + dev_share else 0].append(p)
    return parts


def usable_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pairs with both sides non-empty, each with `idx` (its position) for the generator."""
    return [
        {"document": p["document"].strip(), "summary": p["summary"].strip(), "idx": i}
        for i, p in enumerate(pairs)
        if (p.get("document") or "").strip() and (p.get("summary") or "").strip()
    ]


def auroc(labels: list[int], scores: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else 0.5


def train_factuality(
    pairs: list[dict[str, Any]],
    out_dir: str | Path,
    cfg: FactcheckConfig | None = None,
    *,
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Train the classifier and its stacker on `pairs` (dicts with `document`, `summary`)
    into `out_dir` (a model folder `FactualityScorer` reads); return the metrics, gate AUROC
    included. Raises FactcheckError when there are too few pairs to split."""
    from tasks.factcheck import classifier

    cfg = cfg or FactcheckConfig()
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = usable_pairs(pairs)
    tr, dv, gt = split_by_document(rows, cfg.dev_share, cfg.gate_share)
    if min(len(tr), len(dv), len(gt)) < MIN_DOCUMENTS:
        raise FactcheckError(
            f"{len(rows)} usable (document, summary) pairs split into {len(tr)}/{len(dv)}/"
            f"{len(gt)} train/dev/gate documents: each needs at least {MIN_DOCUMENTS}"
        )
    rng = random.Random(cfg.seed)
    pool = synth.corpus_entities([r["document"] for r in tr[:3000]])
    n_articles = cfg.train_examples // (2 * PER_ARTICLE) + 1
    train_ex = synth.sentence_examples(tr[:n_articles], tr, pool, rng, per_article=PER_ARTICLE)
    dev_rng = random.Random(cfg.seed + 1)
    dev_ex = synth.sentence_examples(dv[: cfg.dev_examples // 2], dv, pool, dev_rng, 1)
    say(
        f"train-factuality: {len(rows):,} pairs -> {len(tr):,}/{len(dv):,}/{len(gt):,} "
        f"train/dev/gate documents; {len(train_ex):,} synthetic training examples"
    )
    # What the stacker will need after training: scoring ~2 pairs per dev and gate document.
    reserve = (
        cfg.score_s_per_pair * 2 * (min(cfg.dev_pairs, len(dv)) + min(cfg.gate_pairs, len(gt)))
    )
    budget = max(1.0, cfg.time_budget_s - (time.perf_counter() - t0) - reserve)
    res = classifier.train(train_ex, dev_ex, out, cfg, time_budget_s=budget, log=say)
    scoring = {
        "k": cfg.evidence_sentences,
        "windows": cfg.windows,
        "max_length": cfg.max_length,
        "max_words": cfg.evidence_words,
        "batch_size": cfg.score_batch_size,
    }
    scorer = classifier.Scorer(out, **scoring)
    stacker, gate = fit_stacker(scorer, dv, gt, pool, cfg)
    (out / STACKER_FILE).write_text(stacker.to_json())
    metrics = {
        "generator": GENERATOR_VERSION,
        "pairs": len(rows),
        "train_documents": len(tr),
        "train_examples": len(train_ex),
        "steps": res.steps,
        "examples_seen": res.examples_seen,
        "dev_auroc_sentences": round(res.dev_auroc, 4),
        **gate,
        "cpu_s": round(cpu_seconds() - c0, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    settings = {"scoring": scoring, "base_model": cfg.base_model or classifier.BASE_MODEL}
    (out / SETTINGS_FILE).write_text(json.dumps({**settings, "metrics": metrics}, indent=1) + "\n")
    say(
        f"train-factuality: gate AUROC {metrics['gate_auroc']:.3f} on {metrics['gate_pairs']} "
        f"synthetic pairs of held-out documents (text features alone "
        f"{metrics['gate_auroc_text_features_only']:.3f}); {metrics['wall_s']:.0f} s"
    )
    return metrics


def fit_stacker(
    scorer: Any,
    dv: list[dict[str, Any]],
    gt: list[dict[str, Any]],
    pool: Any,
    cfg: FactcheckConfig,
    signs: dict[str, int] | None = STACKER_SIGNS,
) -> tuple[stack.Stacker, dict[str, Any]]:
    """(the model's stacker, fitted on synthetic pairs of the dev documents with each weight's
    sign bounded by `signs` (None: free); its gate AUROC on synthetic pairs of the gate documents,
    and that of the text features alone: what the classifier adds)."""
    dev_pairs = synth.pair_examples(dv[: cfg.dev_pairs], dv, pool, random.Random(cfg.seed + 2))
    # The gate's pairs are one-sentence edits only: on `unsupported` pairs the text features
    # alone score ~0.9, so a gate on them would pass a classifier that had learned nothing.
    gate_pairs = synth.pair_examples(
        gt[: cfg.gate_pairs], gt, pool, random.Random(cfg.seed + 3), unsupported_share=0.0
    )
    dev_feats = pair_features([(p["document"], p["summary"]) for p in dev_pairs], scorer)
    gate_feats = pair_features([(p["document"], p["summary"]) for p in gate_pairs], scorer)
    dev_y = [p["label"] for p in dev_pairs]
    gate_y = [p["label"] for p in gate_pairs]
    features = [*CHEAP_FEATURES, *CLASSIFIER_FEATURES]
    stacker = stack.fit(
        dev_feats, dev_y, features, fitted_on=f"{len(dev_pairs)} synthetic dev pairs",
        signs=signs,
    )  # fmt: skip
    cheap = stack.fit(dev_feats, dev_y, list(CHEAP_FEATURES), signs=signs)
    return stacker, {
        "gate_pairs": len(gate_pairs),
        "gate_auroc": round(auroc(gate_y, stacker.predict(gate_feats)), 4),
        "gate_auroc_text_features_only": round(auroc(gate_y, cheap.predict(gate_feats)), 4),
    }


def refit_stacker(
    pairs: list[dict[str, Any]],
    model_dir: str | Path,
    cfg: FactcheckConfig | None = None,
    signs: dict[str, int] | None = STACKER_SIGNS,
) -> dict[str, Any]:
    """Fit the stacker of a model folder trained on `pairs` again (the same dev and gate
    documents and examples as `train_factuality`: the split is by document hash, the
    generator seeded), keeping its classifier; rewrite stacker.json and the gate metrics."""
    from tasks.factcheck import classifier

    cfg = cfg or FactcheckConfig()
    out = Path(model_dir)
    settings = json.loads((out / SETTINGS_FILE).read_text())
    tr, dv, gt = split_by_document(usable_pairs(pairs), cfg.dev_share, cfg.gate_share)
    pool = synth.corpus_entities([r["document"] for r in tr[:3000]])
    scorer = classifier.Scorer(out, **settings["scoring"])
    stacker, gate = fit_stacker(scorer, dv, gt, pool, cfg, signs)
    (out / STACKER_FILE).write_text(stacker.to_json())
    settings["metrics"] = {**settings["metrics"], **gate}
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    return gate


def fit_fallback(
    pairs: list[dict[str, Any]],
    seed: int = 0,
    fitted_on: str = "",
    unsupported_share: float = synth.UNSUPPORTED_SHARE,
) -> stack.Stacker:
    """The model-free stacker (cheap features only) on synthetic pairs made from `pairs`."""
    rows = usable_pairs(pairs)
    pool = synth.corpus_entities([r["document"] for r in rows[:3000]])
    synthetic = synth.pair_examples(
        rows, rows, pool, random.Random(seed), unsupported_share=unsupported_share
    )
    feats = pair_features([(p["document"], p["summary"]) for p in synthetic], None)
    label = fitted_on or f"{len(synthetic)} synthetic pairs"
    return stack.fit(
        feats, [p["label"] for p in synthetic], list(CHEAP_FEATURES), fitted_on=label,
        signs=CHEAP_FEATURE_SIGNS,
    )  # fmt: skip
