"""What a pipeline run has left to do, from the catalog alone (no Prefect, no torch, no model):
`llm4all pipeline` answers "nothing to do" from it without starting a flow run. Each stage's
own pending module answers for its stage; whatever none of them can vouch for (a pending gate,
a source it cannot hash, data it would refuse) leaves the answer to the flow."""

from __future__ import annotations

from typing import Any

from models.loading_config import ModelSpec
from tasks.curate.config import CurateError, DedupConfig, parse_filters
from tasks.curate.pending import nothing_to_curate
from tasks.distill.config import DistillConfig
from tasks.distill.pending import already_distilled
from tasks.ingest.config import IngestConfig
from tasks.ingest.pending import unchanged
from tasks.logits.config import LogitCacheConfig
from tasks.logits.pending import nothing_to_cache
from tasks.quantize.config import QuantizeConfig
from tasks.quantize.pending import already_quantized
from tasks.tokens.config import TokensConfig
from warehouse import Catalog


def nothing_to_run(
    catalog: Catalog, dataset: str, sources: list[str], *, teacher: ModelSpec,
    ingest: IngestConfig, dedup: DedupConfig, tokens: TokensConfig, logits: LogitCacheConfig,
    distill: DistillConfig, quantize: QuantizeConfig,
) -> dict[str, Any] | None:  # fmt: skip
    """The result of a pipeline run of `dataset` on `sources` with nothing to do (the shape
    `pipeline_flow` returns, every stage skipped), or None when any stage might do something.

    Nothing to do: every source is unchanged since a gated raw version
    (`tasks/ingest/pending.py`), no raw version waits for curation, tokens and logits are
    complete for these settings (`tasks/logits/pending.py`), the registry holds the student
    that this data and config make (its run key, `tasks/distill/pending.py`) and each variant
    of it that `quantize.methods` asks for. The caller checks that the run would not record
    other settings for the dataset (`flows/runtime.settings_to_record`)."""
    ingested = [unchanged(catalog, dataset, source, ingest) for source in sources]
    if None in ingested or not nothing_to_curate(catalog, dataset):
        return None
    cached = nothing_to_cache(catalog, dataset, teacher, tokens, logits)
    if cached is None:
        return None
    try:
        filters = parse_filters(None, dedup)
    except CurateError:
        return None  # the flow says what is wrong
    student = already_distilled(catalog, dataset, teacher, distill)
    if student is None:
        return None
    variants = []
    for method in quantize.methods:
        variant = already_quantized(
            catalog, student.model["name"], teacher, quantize, dataset, method
        )
        if variant is None:
            return None
        variants.append(variant.to_dict())
    curated = {"dataset": dataset, "filters": filters, "versions": [], "rows": 0, "kept": 0}
    return {
        "dataset": dataset,
        "ingest": ingested,
        "curate": curated,
        **cached,
        "distill": student.to_dict(),
        "quantize": variants,
    }
