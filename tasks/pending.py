"""What a pipeline or refresh run has left to do, from the catalog alone (no Prefect, no torch,
no model): `llm4all pipeline` and `llm4all refresh` answer "nothing to do" from it
(`nothing_to_run`) without starting a flow run. Each stage's own pending module answers for its stage; whatever none of
them can vouch for (a pending gate, a source it cannot hash, data it would refuse) leaves the
answer to the flow."""

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
from tasks.refresh.config import RefreshConfig
from tasks.refresh.pending import already_refreshed
from tasks.tokens.config import TokensConfig
from warehouse import Catalog


def nothing_to_run(
    catalog: Catalog, dataset: str, sources: list[str], *, teacher: ModelSpec,
    ingest: IngestConfig, dedup: DedupConfig, tokens: TokensConfig, logits: LogitCacheConfig,
    distill: DistillConfig, quantize: QuantizeConfig, refresh: RefreshConfig | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The result of a pipeline run (with `refresh`, a refresh run) of `dataset` on `sources`
    with nothing to do, in the shape `pipeline_flow` (`refresh_flow`) returns, every stage
    skipped; None when any stage might do something.

    Nothing to do: no new data (`data_unchanged`); for a pipeline, the registry holds the
    student that this data and config make (its run key, `tasks/distill/pending.py`); for a
    refresh, the promoted student has nothing to learn (no tokens snapshot newer than its data,
    or this refresh's candidate already registered: `tasks/refresh/pending.py`); and the
    registry holds each variant of the (promoted) student that `quantize.methods` asks for.
    The caller checks that the run would not record other settings for the dataset
    (`flows/runtime.settings_to_record`)."""
    data = data_unchanged(
        catalog, dataset, sources, teacher=teacher, ingest=ingest, dedup=dedup, tokens=tokens,
        logits=logits,
    )  # fmt: skip
    if data is None:
        return None
    if refresh is None:
        student = already_distilled(catalog, dataset, teacher, distill)
        trained = {"distill": student.to_dict()} if student else None
    else:
        refreshed = already_refreshed(catalog, dataset, teacher, distill, refresh)
        trained = {"refresh": refreshed.to_dict()} if refreshed else None
    if trained is None:
        return None
    name = distill.student_name(dataset)
    variants = variants_made(catalog, name, dataset, teacher, quantize)
    if variants is None:
        return None
    return {**data, **trained, "quantize": variants}


def data_unchanged(
    catalog: Catalog, dataset: str, sources: list[str], *, teacher: ModelSpec,
    ingest: IngestConfig, dedup: DedupConfig, tokens: TokensConfig, logits: LogitCacheConfig,
) -> dict[str, Any] | None:  # fmt: skip
    """What the data half of a pipeline or refresh run (`flows/pipeline.update_data`) returns
    when it has nothing to do, or None: every source is unchanged since a gated raw version
    (`tasks/ingest/pending.py`), no raw version waits for curation, tokens and logits are
    complete for these settings (`tasks/logits/pending.py`)."""
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
    curated = {"dataset": dataset, "filters": filters, "versions": [], "rows": 0, "kept": 0}
    return {"dataset": dataset, "ingest": ingested, "curate": curated, **cached}


def variants_made(
    catalog: Catalog, model: str, dataset: str, teacher: ModelSpec, quantize: QuantizeConfig
) -> list[dict[str, Any]] | None:
    """What `flows/quantize.quantize_variants` returns when the registry already holds each
    `quantize.methods` variant of MODEL (its promoted version), or None."""
    variants = []
    for method in quantize.methods:
        variant = already_quantized(catalog, model, teacher, quantize, dataset, method)
        if variant is None:
            return None
        variants.append(variant.to_dict())
    return variants
