"""Continual refresh on a tiny teacher: continue the promoted student with replay, then
promote or keep by the old/new held-out rule."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from data_quality import GatesConfig, gate
from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig
from tasks.distill.distill import DistillError, distill
from tasks.distill.train import batch_indices
from tasks.ingest.ingest import ingest
from tasks.logits.cache import cache_logits
from tasks.logits.config import LogitCacheConfig
from tasks.refresh.config import RefreshConfig
from tasks.refresh.refresh import decide, refresh_student
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog
from warehouse.registry import list_models

GATES = GatesConfig.model_validate({"student": {"max_ppl_ratio": 100.0}})
DCFG = DistillConfig(
    max_steps=4, batch_blocks=2, eval_every=2, checkpoint_every=2, eval_speed_tokens=4,
    rouge_pairs=0, lr=3e-3, ce_weight=1.0,
)  # fmt: skip


def _add(catalog: Catalog, tmp_path: Path, spec: ModelSpec, docs: list[dict], tag: str) -> None:
    src = write_jsonl(tmp_path / f"{tag}.jsonl", docs)
    r = ingest(str(src), "news", catalog, progress=False)
    gate("raw", r.ref, catalog)
    tcfg = TokensConfig(block_size=16, validation_share=0.25)
    for ref in tokenize("news", catalog, spec, tcfg, progress=False).refs:
        gate("tokens", ref, catalog)
    lcfg = LogitCacheConfig(mode="sampled", samples=16, shard_blocks=4)
    for ref in cache_logits("news", catalog, spec, lcfg, progress=False).refs:
        gate("logits", ref, catalog)


def test_the_rule_promotes_only_a_gain_without_forgetting() -> None:
    cfg = RefreshConfig(max_old_regression=0.02)
    assert decide((10.0, 20.0), (10.1, 15.0), cfg).promote  # +1% old, -25% new
    no_gain = decide((10.0, 20.0), (10.0, 20.5), cfg)
    assert not no_gain.promote and "no gain" in no_gain.reason
    forgot = decide((10.0, 20.0), (10.5, 15.0), cfg)
    assert not forgot.promote and "forgot" in forgot.reason and forgot.old_regression == pytest.approx(0.05)  # fmt: skip
    assert not decide((10.0, 20.0), (math.nan, 15.0), cfg).promote


def test_replay_mixes_the_configured_share_of_old_blocks() -> None:
    new, old = np.arange(0, 100), np.arange(100, 200)
    draws = np.concatenate([batch_indices(new, 8, 0, step, 0, old, 0.25) for step in range(500)])
    assert len(draws) == 4000 and abs(np.mean(draws >= 100) - 0.25) < 0.03
    np.testing.assert_array_equal(
        batch_indices(new, 8, 0, 3, 0, None, 0.25), batch_indices(new, 8, 0, 3, 0)
    )  # no replay pool: the plain sampler


def test_refresh_continues_the_promoted_student_and_applies_the_rule(
    catalog: Catalog, tmp_path: Path
) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    with pytest.raises(DistillError, match="no promoted version"):
        refresh_student("news", catalog, spec, DCFG, RefreshConfig(), GATES, progress=False)
    _add(catalog, tmp_path, spec, news_docs(80), "a")
    first = distill("news", catalog, spec, DCFG, GATES, progress=False).model
    assert first["promoted"]
    nothing = refresh_student("news", catalog, spec, DCFG, RefreshConfig(), GATES, progress=False)
    assert nothing.skipped and nothing.model is None and nothing.promoted == first["key"]

    _add(catalog, tmp_path, spec, news_docs(80, prefix="court"), "b")
    other = ModelSpec(path=str(make_tiny_llama(tmp_path / "other-teacher", seed=1)))
    with pytest.raises(DistillError, match="must not mix two teachers"):  # before training
        refresh_student("news", catalog, other, DCFG, RefreshConfig(), GATES, progress=False)
    # A bar no short run can clear: the candidate is registered, the current version stays.
    strict = RefreshConfig(steps=6, min_new_gain=0.99)
    kept = refresh_student("news", catalog, spec, DCFG, strict, GATES, progress=False)
    assert kept.model is not None and kept.model["parent"] == first["key"]
    assert not kept.model["gate_passed"] and not kept.model["promoted"]
    assert kept.promoted == first["key"] and "no gain" in kept.decision["reason"]
    assert kept.model["tokens"] == ["tokens/news@1", "tokens/news@2"]

    loose = RefreshConfig(steps=6, max_old_regression=10.0)
    done = refresh_student("news", catalog, spec, DCFG, loose, GATES, progress=False)
    d = done.decision
    assert d["new_ppl_after"] < d["new_ppl_before"] and d["promote"]
    assert done.model["promoted"] and done.promoted == done.model["key"] == "models/news-student@3"
    again = refresh_student("news", catalog, spec, DCFG, loose, GATES, progress=False)
    assert again.skipped and len(list_models(catalog)) == 3


def test_spread_picks_evenly_across_all_snapshots() -> None:
    from tasks.refresh.refresh import spread

    idx = np.arange(100, 200)
    assert spread(idx, 200).tolist() == idx.tolist()
    assert spread(idx, 5).tolist() == [100, 125, 150, 174, 199]  # first to last
