"""Quantization backends on a tiny random Llama: forward, bytes, save/load, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.quant import (
    METHODS,
    QuantConfig,
    QuantError,
    available,
    conv1d_to_linear,
    disk_bytes,
    load,
    quantize,
    save,
    saved_config,
    weight_bytes,
)
from models.quant_config import quant_config
from tests.tiny import make_tiny_llama

RUNNABLE = [m for m in METHODS if available(m, "cpu") is None]
# gguf-* methods write a file rather than return a model: tests/models/test_gptq.py
IN_MEMORY = [m for m in RUNNABLE if QuantConfig(method=m).backend != "gguf"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    path = make_tiny_llama(tmp_path_factory.mktemp("tiny") / "m", hidden_size=64)
    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


IDS = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18]])


def test_every_method_runs_here() -> None:
    # bitsandbytes (CPU, with accelerate), torchao and torch are all dependencies of dev.
    assert list(METHODS) == RUNNABLE


@pytest.mark.parametrize("method", IN_MEMORY)
def test_quantize_forward_bytes_and_round_trip(tiny, method: str, tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    ref = tiny(input_ids=IDS).logits
    cfg = QuantConfig(method=method, device="cpu")
    q = quantize(tiny, cfg)
    folder = save(q, cfg, tmp_path / method)  # before any forward (see models.quant.save)
    with torch.inference_mode():
        logits = q(input_ids=IDS).logits
    assert logits.shape == ref.shape and torch.isfinite(logits).all()
    # close to fp32 (a random tiny model: loose), and not the same model
    assert (logits - ref).abs().max() < 0.5
    wb = weight_bytes(q)
    assert wb["layers"] == 14  # 7 Linear per layer x 2; the (tied) head is skipped
    assert wb["fp32_bytes"] == weight_bytes_fp32(tiny)
    assert wb["quantized_bytes"] < 0.4 * wb["fp32_bytes"]
    assert weight_bytes(tiny)["layers"] == 0  # the parent was left as it was
    assert all(torch.equal(v, before[k]) for k, v in tiny.state_dict().items())
    assert type(q.lm_head).__name__ == "Linear" and _kind_free(q.lm_head)

    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    assert saved_config(folder) == cfg
    assert disk_bytes(folder) < 4 * sum(p.numel() for p in tiny.parameters())
    again = load(folder)
    with torch.inference_mode():
        assert torch.equal(again(input_ids=IDS).logits, logits)
    # the registry's loader hands a quantized folder to `load` (not a random-weights model)
    from models.loading import load_causal_lm
    from models.loading_config import ModelSpec

    with torch.inference_mode():
        via = load_causal_lm(ModelSpec(path=str(folder)), "cpu")(input_ids=IDS).logits
    assert torch.equal(via, logits)
    assert weight_bytes(again) == wb


def weight_bytes_fp32(model: torch.nn.Module) -> int:
    return sum(
        m.weight.numel() * 4
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
    )


def _kind_free(module: torch.nn.Module) -> bool:
    return type(module.weight).__name__ == "Parameter" and module.weight.dtype == torch.float32


def test_nf4_keeps_layers_it_cannot_block_in_fp32(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    small = AutoModelForCausalLM.from_pretrained(str(make_tiny_llama(tmp_path / "m"))).eval()
    q = quantize(small, QuantConfig(method="nf4"))  # hidden 32: only down_proj (64 in) fits
    assert weight_bytes(q)["layers"] == 2
    with torch.inference_mode():
        assert torch.isfinite(q(input_ids=IDS).logits).all()


@torch.no_grad()
def test_four_bit_is_less_accurate_than_eight_bit(tiny) -> None:
    ref = tiny(input_ids=IDS).logits
    err = {
        m: float(
            (quantize(tiny, QuantConfig(method=m, device="cpu"))(input_ids=IDS).logits - ref)
            .abs()
            .mean()
        )
        for m in ("int8", "nf4", "torchao-int8", "torchao-int4")
    }
    assert err["nf4"] > err["int8"] and err["torchao-int4"] > err["torchao-int8"]


def test_unknown_and_unsupported_methods_are_one_line_quant_errors(tiny) -> None:
    with pytest.raises(QuantError, match="unknown quantization method 'int3'") as e:
        quant_config("int3")
    assert "\n" not in str(e.value)
    assert "unknown" in (available("int3") or "")
    with pytest.raises(QuantError, match="CPU only") as e:
        quantize(tiny, QuantConfig(method="dynamic-int8", device="cuda"))
    assert "\n" not in str(e.value)
    with pytest.raises(QuantError, match="no quantized model"):
        load(Path(__file__).parent)


def test_conv1d_becomes_an_equivalent_linear() -> None:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = torch.nn.Sequential(Conv1D(6, 4))
    x = torch.randn(3, 4)
    ref = model(x)
    conv1d_to_linear(model)
    assert type(model[0]) is torch.nn.Linear and model[0].weight.shape == (6, 4)
    assert torch.allclose(model(x), ref, atol=1e-6)


def test_gpt2_dynamic_int8_quantizes_every_block_not_only_the_head(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    model = GPT2LMHeadModel(cfg).eval()
    q = quantize(model, QuantConfig(method="dynamic-int8"))
    assert weight_bytes(q)["layers"] == 8  # c_attn, c_proj, c_fc, mlp.c_proj per block
    assert torch.isfinite(q(input_ids=IDS % 64).logits).all()
    folder = save(q, QuantConfig(method="dynamic-int8"), tmp_path / "gpt2")
    assert torch.equal(load(folder)(input_ids=IDS % 64).logits, q(input_ids=IDS % 64).logits)
