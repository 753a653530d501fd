"""`factuality_score` for (document, summary) pairs, as `curate` and `score` compute it.

With a factuality model (the newest promoted `factuality` version of the registry, or a folder
named in `dedup.factuality.model`): the cross-encoder's aggregates + the cheap text features,
through the model's own stacker. Without one: the fallback stacker that ships in this package
(`fallback_stacker.json`: cheap text features only, fitted on synthetic pairs of the demo
corpus's training articles by `python -m bench.factuality --write-fallback`). `source` says
which, and the commands print it.

Every pair with a non-empty summary gets a score. Notes say why a score is what it is:
`empty_summary` (no score: nothing to check), `empty_document` (scored against nothing: the
summary's claims are all unsupported), `document_truncated` (only the first
`max_document_sentences` sentences were read).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.factcheck.stack import Stacker
from tasks.factcheck.text import Doc, cheap_features, sentences

if TYPE_CHECKING:
    from tasks.curate.factuality_config import FactualityConfig
    from tasks.factcheck.classifier import Scorer

log = logging.getLogger(__name__)

MODEL_NAME = "factuality"  # the registry name every factuality model is published under
FALLBACK = Path(__file__).resolve().parent / "fallback_stacker.json"
SETTINGS_FILE = "factcheck.json"  # in a model folder: how it scores, what it was trained on
STACKER_FILE = "stacker.json"
CLASSIFIER_FEATURES = ("xc_min", "xc_mean", "xc_minlogit", "xc_first")
CHUNK = 64  # pairs per step: one batch queue for the classifier, one progress-bar update


@dataclass(frozen=True)
class Scored:
    score: float | None
    note: str | None  # None, or why the score is what it is (see the module's docstring)


def pair_features(
    pairs: list[tuple[str, str]], classifier: Scorer | None, max_sentences: int = 2000
) -> list[dict[str, float]]:
    """Cheap features (+ the classifier's, when given) of each (document, summary) pair."""
    docs = [Doc(d, max_sentences=max_sentences) for d, _ in pairs]
    out = [cheap_features(d, s, doc) for (d, s), doc in zip(pairs, docs, strict=True)]
    if classifier is not None:
        xc = classifier.features(pairs, docs)
        out = [{**a, **b} for a, b in zip(out, xc, strict=True)]
    return out


class FactualityScorer:
    """Scores pairs with a factuality model folder, or with the fallback stacker (None)."""

    def __init__(
        self, model_dir: str | Path | None, *, label: str | None = None, max_sentences: int = 2000
    ) -> None:
        self.max_sentences = max_sentences
        self.classifier: Scorer | None = None
        if model_dir is None:
            self.stacker = Stacker.load(FALLBACK)
            self.source = (
                "no factuality model registered: the model-free fallback (text features: "
                "coverage, entity/number precision, novelty, length; train one with "
                "`llm4all train-factuality -d DATASET`)"
            )
            return
        from tasks.factcheck.classifier import Scorer
        from tasks.factcheck.config import FactcheckError

        folder = Path(model_dir)
        if not (folder / STACKER_FILE).exists() or not (folder / SETTINGS_FILE).exists():
            raise FactcheckError(f"{folder} is not a factuality model folder (no {STACKER_FILE})")
        settings = json.loads((folder / SETTINGS_FILE).read_text())["scoring"]
        self.classifier = Scorer(folder, **settings)
        self.stacker = Stacker.load(folder / STACKER_FILE)
        self.source = f"factuality model {label or folder}"

    @classmethod
    def for_config(cls, home: str | Path | None, cfg: FactualityConfig) -> FactualityScorer:
        """`cfg.model` when set, else the home's promoted factuality model, else the fallback."""
        if cfg.model:
            return cls(cfg.model, max_sentences=cfg.max_document_sentences)
        info = promoted_model(home)
        if info is None:
            return cls(None, max_sentences=cfg.max_document_sentences)
        return cls(info.path, label=info.key, max_sentences=cfg.max_document_sentences)

    def score(self, pairs: list[tuple[str, str]], progress: bool = True) -> list[Scored]:
        """One `Scored` per (document, summary) pair, in order; a progress bar with pairs/s on
        stderr (rows with a summary only)."""
        from tqdm import tqdm

        out = [Scored(None, "empty_summary")] * len(pairs)
        todo = [i for i, (_, s) in enumerate(pairs) if (s or "").strip()]
        bar = tqdm(
            total=len(todo), unit="pairs", desc="factuality", file=sys.stderr,
            disable=not progress, mininterval=1.0,
        )  # fmt: skip
        with bar:
            for b in range(0, len(todo), CHUNK):
                idx = todo[b : b + CHUNK]
                chunk = [(pairs[i][0] or "", pairs[i][1]) for i in idx]
                feats = pair_features(chunk, self.classifier, self.max_sentences)
                for i, p, (doc, _) in zip(idx, self.stacker.predict(feats), chunk, strict=True):
                    out[i] = Scored(float(p), self._note(doc))
                bar.update(len(idx))
        return out

    def _note(self, document: str) -> str | None:
        if not document.strip():
            return "empty_document"
        # Cheap first: a document with fewer sentence breaks than the limit cannot be over it.
        breaks = document.count(".") + document.count("\n")
        if breaks >= self.max_sentences and len(sentences(document)) > self.max_sentences:
            return "document_truncated"
        return None


def promoted_model(home: str | Path | None) -> Any:
    """The promoted `factuality` model of the warehouse at `home` (a ModelInfo), or None; a
    home without a catalog has none (nothing is created)."""
    if home is None:
        return None
    from warehouse import Catalog
    from warehouse.registry import promoted_version

    return promoted_version(Catalog(Path(home)), MODEL_NAME)
