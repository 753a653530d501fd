"""What tokenization has left to do, from the catalog alone (no Prefect, no tokenizer): which
versions a student trains on, how far each source has been read. `llm4all cache-logits`
answers "nothing to do" from it (and `tasks/logits/pending.py`) without starting a flow run."""

from __future__ import annotations

from tasks.tokens.config import TokensConfig
from warehouse import Catalog, VersionInfo


def source_stage(catalog: Catalog, dataset: str, cfg: TokensConfig) -> str:
    if cfg.source_stage != "auto":
        return cfg.source_stage
    return "curated" if catalog.versions("curated", dataset) else "raw"


def _tokens(
    catalog: Catalog, dataset: str, versions: list[VersionInfo] | None
) -> list[VersionInfo]:
    return catalog.versions("tokens", dataset) if versions is None else versions


def superseded(
    catalog: Catalog, dataset: str, versions: list[VersionInfo] | None = None
) -> set[str]:
    """Keys of tokens versions made from a raw version that now has a gated curated version.
    `versions`: the dataset's tokens versions, when the caller has read them already (each
    function here takes them so)."""
    curated = {v.parent for v in catalog.versions("curated", dataset) if v.gate_passed}
    return {
        v.ref.key for v in _tokens(catalog, dataset, versions) if v.meta.get("source") in curated
    }


def trainable_tokens(
    catalog: Catalog, dataset: str, versions: list[VersionInfo] | None = None
) -> list[VersionInfo]:
    """The tokens versions a student trains on: gated, and not superseded by curation."""
    versions = _tokens(catalog, dataset, versions)
    stale = superseded(catalog, dataset, versions)
    return [v for v in versions if v.gate_passed and v.ref.key not in stale]


def progress_of(
    catalog: Catalog, dataset: str, versions: list[VersionInfo] | None = None
) -> dict[str, tuple[int, bool]]:
    """Per source key: (rows read by its tokens versions so far, whether it is finished)."""
    out: dict[str, tuple[int, bool]] = {}
    for v in _tokens(catalog, dataset, versions):
        if v.gate_passed is False:
            continue
        src = str(v.meta.get("source"))
        read, finished = out.get(src, (0, False))
        if "source_remaining" not in v.meta:  # made before budgets were recorded: done
            out[src] = (read, True)
            continue
        end = int(v.meta["source_offset"]) + int(v.meta["source_rows"])
        out[src] = (max(read, end), finished or int(v.meta["source_remaining"]) == 0)
    return out
