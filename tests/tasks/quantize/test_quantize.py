"""The quantization stage end to end on a tiny registered model: evaluate against fp32,
register with lineage, gate; reruns do nothing."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from data_quality import GateFailed, GatesConfig, gate
from models.loading_config import ModelSpec
from models.quant import load, saved_config
from tasks.ingest.ingest import ingest
from tasks.quantize.config import QuantizeConfig, QuantizeError
from tasks.quantize.quantize import quantize_model
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog
from warehouse.registry import get_model, list_models, register_model

CFG = QuantizeConfig(eval_blocks=8, batch_blocks=4, speed_blocks=2, speed_tokens=2, device="cpu")


def _gates(d8: float = 100.0, d4: float = 100.0) -> GatesConfig:
    return GatesConfig.model_validate(
        {"quantized": {"max_ppl_delta_8bit": d8, "max_ppl_delta_4bit": d4}}
    )


@pytest.fixture
def setup(catalog: Catalog, tmp_path: Path) -> ModelSpec:
    """Gated tokens of `news` and a registered fp32 model `news-student` trained on them."""
    teacher = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher", hidden_size=64)))
    r = ingest(str(write_jsonl(tmp_path / "in.jsonl", news_docs(60))), "news", catalog, progress=False)  # fmt: skip
    gate("raw", r.ref, catalog)
    tcfg = TokensConfig(block_size=16, validation_share=0.2)
    for ref in tokenize("news", catalog, teacher, tcfg, progress=False).refs:
        gate("tokens", ref, catalog)
    folder = tmp_path / "student"
    shutil.copytree(teacher.path, folder)
    register_model(catalog, "news-student", folder, teacher=teacher.path,
                   tokens=["tokens/news@1"], logits=[], config_hash="x", metrics={})  # fmt: skip
    return teacher


def test_quantize_registers_a_gated_variant_with_lineage(
    catalog: Catalog, setup: ModelSpec
) -> None:
    out = quantize_model("news-student", catalog, setup, CFG, _gates())
    m, x = out.model, out.metrics
    assert out.parent == "models/news-student@1" and not out.skipped
    assert m["key"] == "models/news-student-int8@1" and m["parent"] == "models/news-student@1"
    assert m["gate_passed"] and m["promoted"] and m["teacher"] == setup.path
    assert m["tokens"] == ["tokens/news@1"]
    assert x["dataset"] == "news" and x["eval_blocks"] > 0 and x["positions"] > 0
    assert x["bits"] == 8 and x["quantized_layers"] == 14
    assert 0 < x["weight_bytes_ratio"] < 0.4 and x["weight_bytes"] < x["weight_bytes_fp32"]
    assert 0 < x["disk_bytes"] < x["fp32_bytes"]
    assert math.isclose(x["ppl_delta_pct"], 100 * (x["ppl"] / x["parent_ppl"] - 1), abs_tol=1e-2)
    assert abs(x["ppl_delta_pct"]) < 5  # int8 of a tiny random model: close to fp32
    for k in ("peak_rss_mb", "fwd_tokens_per_s", "parent_fwd_tokens_per_s", "gen_speedup"):
        assert x[k] > 0
    assert get_model(catalog, "news-student-int8").metrics == x
    path = Path(m["path"])
    assert saved_config(path).method == "int8" and (path / "tokenizer.json").exists()
    assert load(path) is not None
    again = quantize_model("news-student:1", catalog, setup, CFG, _gates())
    assert again.skipped and again.model["key"] == m["key"] and len(list_models(catalog)) == 2
    # `methods` (what the pipeline applies) does not change the run
    cfg = CFG.model_copy(update={"methods": ["nf4"]})
    assert quantize_model("news-student", catalog, setup, cfg, _gates()).skipped


def test_a_variant_failing_its_gate_is_registered_but_not_promoted(
    catalog: Catalog, setup: ModelSpec
) -> None:
    with pytest.raises(GateFailed, match="ppl_delta_pct") as e:
        quantize_model("news-student", catalog, setup, CFG, _gates(d4=-50.0), method="nf4")
    assert e.value.stage_result["metrics"]["bits"] == 4
    m = get_model(catalog, "news-student-nf4")
    assert m.gate_passed is False and not m.promoted and m.parent == "models/news-student@1"
    out = quantize_model("news-student", catalog, setup, CFG, _gates(d4=1e6), method="nf4")
    assert out.model["version"] == 1 and out.skipped  # same inputs: that run, as recorded


def test_the_teacher_and_bad_arguments(catalog: Catalog, setup: ModelSpec) -> None:
    with pytest.raises(QuantizeError, match="--dataset"):
        quantize_model("teacher", catalog, setup, CFG, _gates())
    out = quantize_model("teacher", catalog, setup, CFG, _gates(), dataset="news",
                         method="dynamic-int8")  # fmt: skip
    assert out.model["key"] == "models/teacher-dynamic-int8@1" and out.parent == setup.path
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize_model("teacher-dynamic-int8", catalog, setup, CFG, _gates())
    with pytest.raises(QuantizeError, match="no model nope"):
        quantize_model("nope", catalog, setup, CFG, _gates())
    with pytest.raises(QuantizeError, match="no tokens snapshot"):
        quantize_model("news-student", catalog, setup, CFG, _gates(), dataset="other")
