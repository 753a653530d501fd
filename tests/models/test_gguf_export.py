"""GGML blocks and the GGUF writer: bytes as gguf.quants writes them, a round trip through
transformers' GGUF loader with the exact logits, the tokenizer inside, and bad input (a
one-line ExportError, no partial file). A tiny random Llama and a tiny byte-level BPE."""

from __future__ import annotations

import copy
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from models.ggml_blocks import FORMATS, quantize
from models.gguf_export import ExportError, export_gguf, gguf_types, tensor_plan
from models.quant_config import QuantError
from tests.tiny import make_bpe_tokenizer_dir


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        str(make_bpe_tokenizer_dir(tmp_path_factory.mktemp("bpe")))
    )


def _llama(vocab: int, tied: bool = True, hidden: int = 64):
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    torch.manual_seed(0)
    cfg = llama_config(vocab, hidden=hidden, positions=128, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return _llama(len(tokenizer))


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()


def _dequantized(model, typ: str):
    m = copy.deepcopy(model)
    if typ != "f32":
        with torch.no_grad():
            for p in m.parameters():
                if p.ndim == 2:
                    p.copy_(quantize(p, typ, reference=True).dequantize())
    return m


@pytest.mark.parametrize("name", list(FORMATS))
def test_blocks_are_the_bytes_gguf_quants_writes(name: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 128) * 0.05
    w[3, 5] = 0.9  # an outlier
    w[7, :32] = 0  # an all-zero block
    t = getattr(gguf.GGMLQuantizationType, name.upper())
    qz = quantize(w, name, reference=True)
    ours = qz.pack()
    assert np.array_equal(ours, gguf.quants.quantize(w.numpy(), t))
    assert qz.nbytes == ours.nbytes == 16 * 128 // 32 * FORMATS[name].type_size
    # what a reader decodes from our bytes is what we compute with, also with searched scales
    assert np.array_equal(gguf.quants.dequantize(ours, t), qz.dequantize().numpy())
    searched = quantize(w, name, weights=torch.rand(128), search=(0.9, 0.95, 1.05))
    assert np.array_equal(gguf.quants.dequantize(searched.pack(), t), searched.dequantize().numpy())
    err = ((qz.dequantize() - w) ** 2).sum() / (w**2).sum()
    assert 0 < err < 0.05


@pytest.mark.parametrize("typ", ["f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"])
def test_round_trip_through_transformers(tmp_path: Path, model, tokenizer, typ: str) -> None:
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", typ, metadata={"parent": "x@1"})
    x = torch.randint(0, len(tokenizer), (2, 16))
    with torch.no_grad():
        assert torch.equal(_load(path)(x).logits, _dequantized(model, typ)(x).logits)
    f = gguf.GGUFReader(str(path)).fields
    assert f["general.architecture"].contents() == "llama"
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "gpt-2"  # a plain byte-level BPE
    assert f["tokenizer.ggml.tokens"].contents()[:4] == ["<unk>", "<pad>", "<eos>", "<|im_start|>"]
    assert f["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id
    assert f["tokenizer.chat_template"].contents() == tokenizer.chat_template
    assert f["llm4all.parent"].contents() == "x@1"
    assert list(tmp_path.iterdir()) == [path]  # no .part left


def test_heads_narrower_than_the_hidden_size_say_their_width(tmp_path: Path, tokenizer) -> None:
    # What width pruning leaves (SmolLM2 cut to 6 heads of 64 with 480 hidden channels): here 2
    # heads of 16 channels in a hidden size of 64.
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    torch.manual_seed(0)
    cfg = llama_config(len(tokenizer), hidden=64, heads=2, kv_heads=1, head_dim=16,
                       positions=128, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", "q8_0")
    f = gguf.GGUFReader(str(path)).fields
    assert f["llama.rope.dimension_count"].contents() == 16  # transformers' head_dim
    assert f["llama.attention.key_length"].contents() == 16  # llama.cpp's
    assert f["llama.attention.value_length"].contents() == 16
    x = torch.randint(0, len(tokenizer), (2, 16))
    with torch.no_grad():
        assert torch.equal(_load(path)(x).logits, _dequantized(model, "q8_0")(x).logits)


def test_untied_head_and_a_mixed_plan(tmp_path: Path, tokenizer) -> None:
    model = _llama(len(tokenizer), tied=False)
    plan = tensor_plan(
        model, {"*": "q4_0", "output.weight": "q8_0", "blk.1.ffn_down.weight": "q5_1"}
    )
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", plan)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["output.weight"] == "Q8_0" and types["token_embd.weight"] == "Q4_0"
    assert types["blk.1.ffn_down.weight"] == "Q5_1" and types["blk.0.attn_norm.weight"] == "F32"
    assert gguf_types(path) == {"F32": 5, "Q4_0": 14, "Q8_0": 1, "Q5_1": 1}
    mem = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in mem.named_parameters():
            if p.ndim == 2:
                from models.gguf_export import gguf_name

                p.copy_(quantize(p, plan[gguf_name(n)], reference=True).dequantize())
    x = torch.randint(0, len(tokenizer), (1, 12))
    with torch.no_grad():
        assert torch.equal(_load(path)(x).logits, mem(x).logits)


@pytest.mark.parametrize("typ", ["q4_1", "q4_0"])
def test_a_fine_tune_off_the_grid_is_not_rounded_back_onto_it(
    tmp_path: Path, tokenizer, typ: str
) -> None:
    """Weights a fraction of a step off the grid they were dequantized from (a student
    distilled from a teacher read from a GGUF of this type): round-to-nearest puts each value
    back on the grid, undoing the fine-tune (the demo's distilled student at q4_1: perplexity
    +232 %). The file keeps the change on average; weights on the grid are written exactly."""
    from models.gguf_export import gguf_name

    base = _llama(len(tokenizer))
    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p, q in zip(base.parameters(), tuned.parameters(), strict=True):
            if p.ndim == 2:
                qz = quantize(p, typ, reference=True)
                p.copy_(qz.dequantize())  # on the grid
                step = qz.d.abs().repeat_interleave(32, dim=1)
                q.copy_(p + 0.1 * step * torch.randn(p.shape, generator=g))
    files = {
        "base": export_gguf(base, tokenizer, tmp_path / "base.gguf", typ),
        "tuned": export_gguf(tuned, tokenizer, tmp_path / "tuned.gguf", typ),
    }
    written = {
        k: {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in gguf.GGUFReader(str(f)).tensors}
        for k, f in files.items()
    }  # fmt: skip
    checked = 0
    for hf_name, b in base.state_dict().items():
        name = gguf_name(hf_name)
        if name not in written["base"] or b.ndim != 2 or "attn_q" in name or "attn_k" in name:
            continue  # (q, k: rows permuted in the file; output: tied, not in it)
        assert np.array_equal(written["base"][name].reshape(b.shape), b.numpy())
        t = tuned.state_dict()[hf_name]
        delta = t - b
        kept = torch.from_numpy(written["tuned"][name].reshape(b.shape).copy()) - b
        # round-to-nearest: kept ~ 0 (the fine-tune undone); unbiased rounding: ~ delta
        assert float((kept * delta).sum() / (delta * delta).sum()) > 0.5, name
        checked += 1
    assert checked == 1 + 5 * 2  # token_embd, and v, output, gate, up, down of each layer


def test_bad_input_is_one_line_and_leaves_no_file(tmp_path: Path, model, tokenizer) -> None:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from tests.tiny import make_tokenizer_dir

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(ExportError, match="Llama-architecture") as e:
        export_gguf(gpt2, tokenizer, tmp_path / "m.gguf", "q8_0")
    assert isinstance(e.value, QuantError) and "\n" not in str(e.value)
    with pytest.raises(ExportError, match="unknown tensor type 'q3_k'"):
        export_gguf(model, tokenizer, tmp_path / "m.gguf", "q3_k")
    with pytest.raises(ExportError, match="multiple of 32"):
        export_gguf(_llama(len(tokenizer), hidden=48), tokenizer, tmp_path / "m.gguf", "q4_0")
    words = AutoTokenizer.from_pretrained(str(make_tokenizer_dir(tmp_path / "words")))
    with pytest.raises(ExportError, match="only BPE tokenizers"):  # fails while writing
        export_gguf(_llama(len(words)), words, tmp_path / "m.gguf", "q8_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["words"]
