"""Calibrated quantization into GGML blocks (models/gptq.py) and the gguf-* variants
(models/gguf_quant.py) on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.ggml_blocks import FORMATS, quantize
from models.gguf_export import plan_bytes, tensor_plan
from models.gptq import (
    apply_codes,
    collect_inputs,
    gptq_quantize,
    level_sensitivity,
    linear_names,
    mixed_plan,
    nll,
    quantize_codes,
    sensitivity,
)
from models.quant_config import QuantConfig, QuantError, gguf_method


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    torch.manual_seed(0)
    cfg = llama_config(96, hidden=64, layers=2, positions=64, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 96, (6, 16))


def test_input_statistics_equal_each_linear_on_its_own(model, ids) -> None:
    H = collect_inputs(model, ids, batch=4)
    ref: dict[str, torch.Tensor] = {}
    n: dict[str, int] = {}
    hooks = []
    for name, mod in model.named_modules():
        if name in linear_names(model):

            def f(mod, inp, out, name=name):
                x = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()
                ref[name] = ref.get(name, 0) + x.T @ x
                n[name] = n.get(name, 0) + x.shape[0]

            hooks.append(mod.register_forward_hook(f))
    with torch.no_grad():
        for lo in range(0, len(ids), 4):
            model(input_ids=torch.from_numpy(ids[lo : lo + 4]))
    for h in hooks:
        h.remove()
    assert set(H) == set(ref) and len(H) == 2 * 7 + 1  # 7 Linears a layer + the head
    for k in ref:
        assert torch.allclose(H[k], ref[k] / n[k], rtol=1e-5, atol=1e-6)
    assert H["model.layers.0.self_attn.q_proj"] is H["model.layers.0.self_attn.k_proj"]


@pytest.mark.parametrize("fmt", ["q4_0", "q4_1", "q5_0"])
def test_gptq_lowers_the_output_error_of_round_to_nearest(fmt: str) -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(48, 128, generator=g) * 0.05
    mix = torch.randn(128, 128, generator=g) * 0.3 + torch.eye(128)
    X = torch.randn(2048, 128, generator=g) @ mix  # correlated inputs
    H = X.T @ X / len(X)

    def out_err(qz) -> float:
        dW = qz.dequantize() - W
        return float(((dW @ H) * dW).sum())

    q = gptq_quantize(W, H, fmt)
    assert q.fmt.name == fmt and q.codes.shape == W.shape and q.d.shape == (48, 4)
    assert out_err(q) < 0.8 * out_err(quantize(W, fmt, reference=True))


def test_codes_for_a_plan_and_the_model_computing_with_them(model, ids) -> None:
    plan = tensor_plan(model, {"*": "q4_0", "token_embd.weight": "q8_0"})
    rtn = quantize_codes(model, plan, None, "rtn")
    assert set(rtn) == {g for g, t in plan.items() if t != "f32"}
    emb = model.model.embed_tokens.weight
    assert np.array_equal(
        rtn["token_embd.weight"].pack(), quantize(emb, "q8_0", reference=True).pack()
    )
    H = collect_inputs(model, ids)
    gptq = quantize_codes(model, plan, H, "gptq")
    assert (
        gptq["token_embd.weight"].fmt.name == "q8_0"
        and gptq["blk.0.ffn_up.weight"].fmt.name == "q4_0"
    )
    q = apply_codes(model, gptq)
    assert torch.equal(
        q.model.layers[1].mlp.down_proj.weight, gptq["blk.1.ffn_down.weight"].dequantize()
    )
    assert q.lm_head.weight is q.model.embed_tokens.weight  # still tied
    assert not torch.equal(
        model.model.layers[1].mlp.down_proj.weight, q.model.layers[1].mlp.down_proj.weight
    )


def test_measured_sensitivity_and_the_mixed_plan(model, ids) -> None:
    plan = tensor_plan(model, "q4_0")
    H = collect_inputs(model, ids)
    codes = quantize_codes(model, plan, H, "gptq")
    sens = sensitivity(model, ids, codes)
    assert set(sens) == set(codes)
    # one tensor's figure is the NLL change with that tensor alone quantized
    g = "blk.0.attn_v.weight"
    only = apply_codes(model, {g: codes[g]})
    (base, n), (total, _) = nll(model, ids), nll(only, ids)
    assert sens[g] == pytest.approx((total - base) / n, rel=1e-4, abs=1e-7)
    by_level = level_sensitivity(model, sens, codes, H)
    assert by_level["q4_0"] == sens and set(by_level) == set(FORMATS)
    # more bits, less estimated harm (the output error shrinks with the grid step)
    top = max(sens, key=lambda k: sens[k])
    assert abs(by_level["q8_0"][top]) < abs(by_level["q4_0"][top])

    low = plan_bytes(model, plan)
    assert mixed_plan(model, by_level, "q4_0", low) == {k: "q4_0" for k in codes}
    budget = low + 0.5 * plan_bytes(model, {"token_embd.weight": "q8_0"})
    mixed = mixed_plan(model, by_level, "q4_0", budget)
    assert plan_bytes(model, tensor_plan(model, mixed)) <= budget
    assert any(t != "q4_0" for t in mixed.values())


def test_export_types_and_methods() -> None:
    assert gguf_method("q8_0") == "gguf-q8_0" and gguf_method("q4_0,mixed") == "gguf-q4_0-mixed"
    for bad in ("q3_k", "q8_0,mixed", "q4_0,fast", "Q4_0"):
        with pytest.raises(QuantError, match="unsupported GGUF type"):
            gguf_method(bad)
    cfg = QuantConfig(method="gguf-q5_0-mixed")
    assert (cfg.bits, cfg.backend, cfg.gguf_type, cfg.mixed) == (5, "gguf", "q5_0", True)
    assert QuantConfig(method="gguf-q8_0").bits == 8


@pytest.mark.parametrize("method", ["gguf-q8_0", "gguf-q4_1-mixed"])
def test_a_gguf_variant_folder_loads_back_as_written(tmp_path: Path, method: str) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    from models.gguf_quant import load_variant, write_variant
    from models.loading import load_causal_lm, load_tokenizer, resolve
    from models.loading_config import ModelSpec
    from models.quant import load, saved_config
    from models.tiny import llama_config
    from tests.tiny import make_bpe_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(make_bpe_tokenizer_dir(tmp_path / "tok")))
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(len(tok), hidden=64, tie_word_embeddings=True)).eval()
    calib = np.random.default_rng(1).integers(0, len(tok), (4, 16))
    cfg = QuantConfig(method=method, mixed_budget=0.2)
    folder = tmp_path / "variant"
    info = write_variant(model, tok, cfg, folder, calib_ids=calib, sensitivity_ids=calib[:2])
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.gguf",
        "quantization.json",
    ]
    meta = json.loads((folder / "quantization.json").read_text())
    assert meta["format"] == "gguf" and meta["method"] == method and saved_config(folder) == cfg
    assert info["file_bytes"] == (folder / "model.gguf").stat().st_size
    assert info["weight_bytes"] <= 0.2 * info["weight_bytes_fp32"] or method == "gguf-q8_0"
    if method == "gguf-q8_0":
        assert info["calibration"] == "rtn" and info["tensor_types"] == {"q8_0": 15, "f32": 5}
    else:
        assert info["calibration"] == "gptq" and "most_sensitive" in info
        assert set(info["tensor_types"]) - {"f32", "q4_1"}  # some tensors raised
    assert resolve(ModelSpec(path=str(folder))) == (str(folder), "model.gguf")
    x = torch.from_numpy(calib[:2])
    with torch.no_grad():
        a = load_variant(folder)(x).logits
        assert torch.equal(a, load_causal_lm(ModelSpec(path=str(folder)), "cpu")(x).logits)
        assert torch.equal(a, load(folder)(x).logits)
    assert load_tokenizer(ModelSpec(path=str(folder))).encode("the news") == tok.encode("the news")


def test_a_gguf_file_is_converted_once_and_then_read_from_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    import models.loading as loading
    from models.gguf_quant import load_variant, write_variant
    from models.loading_config import ModelSpec
    from models.tiny import llama_config
    from tests.tiny import make_bpe_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(make_bpe_tokenizer_dir(tmp_path / "tok")))
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(len(tok), hidden=64, tie_word_embeddings=True)).eval()
    folder = tmp_path / "variant"
    write_variant(model, tok, QuantConfig(method="gguf-q8_0"), folder)
    spec = ModelSpec(path=str(folder))
    conversions: list[Path] = []
    convert = loading._convert
    monkeypatch.setattr(loading, "_convert", lambda w, g, out: (conversions.append(out),
                                                                 convert(w, g, out)))  # fmt: skip
    monkeypatch.setenv("LLM4ALL_CACHE", str(tmp_path / "cache"))
    x = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        direct = load_variant(folder)(x).logits
        first = loading.load_causal_lm(spec, "cpu")(x).logits
        again = loading.load_causal_lm(spec, "cpu")(x).logits
    assert len(conversions) == 1  # the second load read the copy
    assert torch.equal(first, direct) and torch.equal(again, direct)
    copies = list((tmp_path / "cache" / "gguf").iterdir())
    assert [c.name.startswith("model-") for c in copies] == [True]  # no temporary left behind
    assert loading.load_tokenizer(spec).encode("the news") == tok.encode("the news")
    assert len(conversions) == 1

    monkeypatch.setenv("LLM4ALL_CACHE", "off")
    with torch.no_grad():
        assert torch.equal(loading.load_causal_lm(spec, "cpu")(x).logits, direct)
    assert len(conversions) == 1  # off: the GGUF file itself, nothing written
