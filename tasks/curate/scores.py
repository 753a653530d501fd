"""Model-based row scores: `mgt_score` (machine-written text) and `factuality_score` (does the
summary agree with its document). Both are null when not asked for or undefined."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from models.loading_config import ModelSpec
from tasks.curate.config import CurateError, DedupConfig

log = logging.getLogger(__name__)

SCORES = pa.schema(
    [("doc", pa.int64()), ("mgt_score", pa.float64()), ("factuality_score", pa.float64())]
)


def row_scores(
    work: Path, scratch: Path, cfg: DedupConfig, filters: list[str], teacher: ModelSpec | None,
    home: str | Path | None = None,
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Per-row `mgt_score` and `factuality_score` (null when not asked for or undefined), and
    what scored factuality (`{"factuality": {"scorer": ..., "notes": {note: rows}}}`).

    factuality, method `stacked` (default): `tasks.factcheck.FactualityScorer`: the promoted
    factuality model of the warehouse at `home` (or `dedup.factuality.model`), else the
    model-free fallback; every row with a summary gets a score (null without one). Method
    `precision`: entity and number precision of the summary against the text, combined with
    the LM score when `dedup.factuality.lm` and with an NLI model when
    `dedup.factuality.nli_model` (null when nothing is checkable). mgt: `dedup.mgt.method`
    with the configured scoring LM (the teacher by default): Fast-DetectGPT, Binoculars with
    `dedup.mgt.performer`, ... or the stacker; null for texts shorter than
    `dedup.mgt.min_tokens`.
    """
    from tasks.curate.mgt import MgtError, load_scorer

    model = tokenizer = mgt_scorer = None
    fcfg = cfg.factuality
    stacked = fcfg.method == "stacked"
    fact_lm = "factuality" in filters and fcfg.lm and not stacked
    if "mgt" in filters or fact_lm:
        try:
            mgt_scorer = load_scorer(cfg.mgt, teacher)
            model, tokenizer = mgt_scorer.model, mgt_scorer.tokenizer
        except MgtError as e:
            raise CurateError(str(e)) from None
    nli = scorer = None
    info: dict[str, Any] = {}
    if "factuality" in filters and stacked:
        from tasks.factcheck.scorer import FactualityScorer

        scorer = FactualityScorer.for_config(home, fcfg)
        log.info("factuality: %s", scorer.source)
        info["factuality"] = {"scorer": scorer.source, "notes": {}}
    elif "factuality" in filters and cfg.factuality.nli_model:
        nli = load_nli(cfg.factuality.nli_model)
    out = scratch / "scores.parquet"
    columns = [
        c for c in ("doc", "text", "summary") if c in pq.ParquetFile(work).schema_arrow.names
    ]
    with pq.ParquetWriter(out, SCORES) as writer:
        for batch in pq.ParquetFile(work).iter_batches(batch_size=2048, columns=columns):
            texts = batch.column("text").to_pylist()
            n = len(texts)
            mgt: list[float | None] = [None] * n
            fact: list[float | None] = [None] * n
            if "mgt" in filters and mgt_scorer is not None:
                todo = [i for i, t in enumerate(texts) if t and t.strip()]
                got = mgt_scorer.score([texts[i] for i in todo], progress=len(todo) > 64)
                for i, v in zip(todo, got, strict=True):
                    mgt[i] = None if v != v else v  # NaN (too short to score) -> null
            if "factuality" in filters and "summary" in batch.schema.names:
                summaries = batch.column("summary").to_pylist()
                # A pair needs both sides; an empty document is already `empty_text`.
                pairs = [
                    i
                    for i, (t, m) in enumerate(zip(texts, summaries, strict=True))
                    if t and t.strip() and m and m.strip()
                ]
                docs_sums = [(texts[i], summaries[i]) for i in pairs]
                if scorer is not None:
                    got = _stacked(scorer, docs_sums, info["factuality"]["notes"])
                else:
                    got = _precision(docs_sums, cfg, model, tokenizer, nli, fact_lm)
                for i, v in zip(pairs, got, strict=True):
                    fact[i] = v
            writer.write_table(
                pa.table(
                    [
                        batch.column("doc"),
                        pa.array(mgt, pa.float64()),
                        pa.array(fact, pa.float64()),
                    ],
                    schema=SCORES,
                )
            )
    for note, rows in info.get("factuality", {}).get("notes", {}).items():
        log.info("factuality: %d rows %s", rows, note.replace("_", " "))
    return out, info


def _stacked(scorer: Any, pairs: list[tuple[str, str]], notes: dict[str, int]) -> list:
    """factuality_score by a FactualityScorer; counts its notes (truncated documents, ...)."""
    out = []
    for got in scorer.score(pairs, progress=len(pairs) > 64):
        out.append(got.score)
        if got.note:
            notes[got.note] = notes.get(got.note, 0) + 1
    return out


def _precision(
    pairs: list[tuple[str, str]], cfg: DedupConfig, model: Any, tokenizer: Any, nli: Any,
    lm_on: bool,
) -> list[float | None]:  # fmt: skip
    """factuality_score by entity/number precision (+ LM lift, + NLI when configured)."""
    from tasks.curate.factuality import combine, entity_precision, lm_support_features, nli_scores

    fcfg = cfg.factuality
    lm: list = [None] * len(pairs)
    if lm_on and pairs:
        lm = lm_support_features(
            pairs, model, tokenizer, max_document_tokens=fcfg.max_document_tokens,
            batch_size=fcfg.batch_size,
        )  # fmt: skip
    entail: list[float | None] = [None] * len(pairs)
    if nli is not None and pairs:
        entail = nli_scores(pairs, *nli, max_length=fcfg.nli_max_length)
    return [
        combine(entity_precision(d, s).score, lm[k], fcfg.weights, entail[k])
        for k, (d, s) in enumerate(pairs)
    ]


def load_nli(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of an NLI sequence classifier; a clear error when it is not one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tasks.curate.factuality import entailment_index

    try:
        model = AutoModelForSequenceClassification.from_pretrained(name).eval()
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise CurateError(f"cannot load the NLI model {name}: {str(e).splitlines()[0]}") from e
    try:
        entailment_index(model.config)
    except ValueError as e:
        raise CurateError(f"{name}: {e}") from None
    return model, tokenizer
