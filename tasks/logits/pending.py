"""What the logit cache has left to do, from the catalog alone (no Prefect, no model): `llm4all
cache-logits` answers "nothing to do" from it without starting a flow run or loading the
teacher."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from models.loading_config import ModelSpec
from tasks.logits.config import LogitCacheConfig
from tasks.tokens.config import TokensConfig
from tasks.tokens.pending import progress_of, source_stage, trainable_tokens
from warehouse import Catalog, DatasetRef


def cache_key(teacher: ModelSpec, tok_hash: str, tokens: DatasetRef, cfg: LogitCacheConfig) -> str:
    """The identity of one cache of `tokens`: teacher, tokenizer, the snapshot and the cache
    parameters. A logits version with this key makes the work already done."""
    payload = {
        "teacher": teacher.path,
        "tokenizer_sha256": tok_hash,
        "tokens": tokens.key,
        "tokens_sha256": tokens.sha256,
        **cfg.params(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cached_keys(catalog: Catalog, dataset: str) -> set[str]:
    """The cache keys of `dataset`'s logits versions that did not fail their gate: a tokens
    version whose `cache_key` is among them needs no cache of these parameters."""
    return {
        str(v.meta.get("cache_key"))
        for v in catalog.versions("logits", dataset)
        if v.gate_passed is not False
    }


def nothing_to_cache(
    catalog: Catalog, dataset: str, teacher: ModelSpec, tokens: TokensConfig,
    logits: LogitCacheConfig,
) -> dict[str, Any] | None:  # fmt: skip
    """The result of a cache-logits run with nothing to do (the shape `cache_logits_flow`
    returns, everything skipped), or None when there is work or a gate pending.

    Nothing to do: no tokens or logits version waits for its gate, every gated source is fully
    tokenized, and every trainable tokens version has a cache with this run's key. The key
    uses the tokenizer hash the tokens version recorded: a teacher with another tokenizer is
    the flow's error to report, so it is never "nothing to do"."""
    versions = catalog.versions("tokens", dataset)  # read once, for every check below
    if any(v.gate_passed is None for v in versions + catalog.versions("logits", dataset)):
        return None
    sources = [
        v
        for v in catalog.versions(source_stage(catalog, dataset, tokens), dataset)
        if v.gate_passed
    ]
    done = progress_of(catalog, dataset, versions)
    if not sources or any(not done.get(s.ref.key, (0, False))[1] for s in sources):
        return None
    trainable = trainable_tokens(catalog, dataset, versions)
    existing = cached_keys(catalog, dataset)
    if not trainable or any(
        cache_key(teacher, str(v.meta.get("tokenizer_sha256")), v.ref, logits) not in existing
        for v in trainable
    ):
        return None
    tokenized = [s.ref.key for s in sources]
    cached = [v.ref.key for v in trainable]
    return {  # TokenizeResult and LogitsResult.to_dict() of a run that made nothing
        "tokens": {"dataset": dataset, "refs": [], "skipped": tokenized, "over_budget": {}},
        "logits": {
            "dataset": dataset, "refs": [], "skipped": cached, "positions": 0, "seconds": 0.0,
            "bytes_per_token": None,
        },
        "gates": [],
    }  # fmt: skip
