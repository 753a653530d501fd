"""Distil end to end on a tiny teacher: train, evaluate, register, gate; reruns do nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_quality import GateFailed, GatesConfig, gate
from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig
from tasks.distill.distill import DistillError, distill
from tasks.ingest.ingest import ingest
from tasks.logits.cache import cache_logits
from tasks.logits.config import LogitCacheConfig
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import distill_inputs, news_docs, tokenized_pairs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog
from warehouse.registry import get_model, list_models


def _gates(ratio: float) -> GatesConfig:
    return GatesConfig.model_validate({"student": {"max_ppl_ratio": ratio}})


CFG = DistillConfig(
    max_steps=4, batch_blocks=2, eval_every=2, checkpoint_every=2, eval_speed_tokens=4
)


def test_distill_registers_a_loadable_gated_student(catalog: Catalog, tmp_path: Path) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    distill_inputs(catalog, tmp_path, spec)
    out = distill("news", catalog, spec, CFG, _gates(100.0), progress=False)
    m = out.model
    assert m["key"] == "models/news-student@1" and m["gate_passed"] and m["promoted"]
    assert m["tokens"] == ["tokens/news@1"] and m["logits"] == ["logits/news@1"]
    assert m["teacher"] == spec.path and m["metrics"]["layers"] == [0]  # 1 of 2 layers
    assert out.evaluation["param_share"] < 1 and out.train["steps"] == 4
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(m["path"])
    assert (path / "model.safetensors").exists() and path.parent.name == "news-student"
    model = AutoModelForCausalLM.from_pretrained(str(path))
    assert model.config.num_hidden_layers == 1
    assert AutoTokenizer.from_pretrained(str(path)).eos_token == "<eos>"
    again = distill("news", catalog, spec, CFG, _gates(100.0), progress=False)
    assert again.skipped and len(list_models(catalog)) == 1


def test_a_student_failing_its_gate_is_registered_but_not_promoted(
    catalog: Catalog, tmp_path: Path
) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    distill_inputs(catalog, tmp_path, spec)
    with pytest.raises(GateFailed, match="ppl_ratio"):
        distill("news", catalog, spec, CFG, _gates(0.01), progress=False)
    m = get_model(catalog, "news-student")
    assert m.gate_passed is False and not m.promoted
    cfg = CFG.model_copy(update={"max_steps": 2})
    out = distill("news", catalog, spec, cfg, _gates(100.0), progress=False)
    assert out.model["version"] == 2 and out.model["promoted"]
    assert [m.promoted for m in list_models(catalog)] == [False, True]


def test_offline_needs_a_cache_online_does_not(catalog: Catalog, tmp_path: Path) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    with pytest.raises(DistillError, match="no tokens"):
        distill("news", catalog, spec, CFG, progress=False)
    distill_inputs(catalog, tmp_path, spec, cache=False)
    with pytest.raises(DistillError, match="cache-logits"):
        distill("news", catalog, spec, CFG, progress=False)
    online = CFG.model_copy(update={"mode": "online", "name": "online"})
    out = distill("news", catalog, spec, online, _gates(100.0), progress=False)
    assert out.model["logits"] == [] and out.model["name"] == "online"


def test_rouge_l_of_held_out_summaries_is_measured(catalog: Catalog, tmp_path: Path) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    tokenized_pairs(catalog, tmp_path, spec, n=60)
    cfg = CFG.model_copy(update={"mode": "online", "rouge_pairs": 3, "rouge_max_new_tokens": 4})
    out = distill("pairs", catalog, spec, cfg, _gates(100.0), progress=False)
    ev = out.evaluation
    assert ev is not None and ev["rouge_pairs"] == 3
    assert 0.0 <= ev["student_rouge_l"] <= 1.0 and 0.0 <= ev["teacher_rouge_l"] <= 1.0
    assert len(ev["examples"]) == 3 and ev["examples"][0]["reference"]
    assert out.model["metrics"]["student_rouge_l"] == ev["student_rouge_l"]


def test_caches_of_different_kinds_are_never_mixed(catalog: Catalog, tmp_path: Path) -> None:
    """tokens@1 cached with 16 draws; then new data, and a cache run with 8 draws that covers
    both snapshots: training uses the 8-draw caches of both, never one of each."""
    from tasks.distill.pending import training_data

    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    distill_inputs(catalog, tmp_path, spec)  # tokens@1 + a 16-draw cache
    more = ingest(str(write_jsonl(tmp_path / "b.jsonl", news_docs(30, prefix="court"))), "news",
                  catalog, progress=False)  # fmt: skip
    gate("raw", more.ref, catalog)
    for ref in tokenize("news", catalog, spec, TokensConfig(block_size=16), progress=False).refs:
        gate("tokens", ref, catalog)
    # only tokens@2 has no cache of the 16-draw kind: refused, not mixed with another kind
    eight = LogitCacheConfig(mode="sampled", samples=8, shard_blocks=4)
    with pytest.raises(DistillError, match="tokens/news@2"):
        training_data(catalog, "news", spec, CFG)
    for ref in cache_logits("news", catalog, spec, eight, progress=False).refs:
        gate("logits", ref, catalog)
    tokens, caches = training_data(catalog, "news", spec, CFG)
    assert [c.meta["params"]["samples"] for c in caches] == [8, 8]
    assert [c.meta["tokens"] for c in caches] == [t.ref.key for t in tokens]


def test_targets_of_different_draw_counts_refuse_to_concatenate() -> None:
    import numpy as np

    from models.logit_cache import LogitCacheError, SparseTargets, concat

    def part(samples: int) -> SparseTargets:
        return SparseTargets(
            "sampled", ids=np.array([1], np.uint16), values=np.array([samples], np.uint8),
            lengths=np.array([1], np.uint8), samples=samples,
        )  # fmt: skip

    assert concat([part(8), part(8)]).positions == 2
    with pytest.raises(LogitCacheError, match="different kinds"):
        concat([part(8), part(16)])
