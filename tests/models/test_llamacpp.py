"""An exported GGUF run through llama.cpp (models/llamacpp.py): its perplexity against the
same codes dequantized in PyTorch, and greedy generation.

llama-cpp-python is optional (PyPI has only its source; `make llama-cpp` builds it, ~10 min of
CPU), so this test skips, saying so, where it is not installed. What needs no llama.cpp (the
bytes, the tokenizer, a read-back through transformers and gguf's reader) is tested in
test_gguf_export.py and tests/flows/test_quantize_cli.py on every machine."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models import llamacpp

pytestmark = pytest.mark.skipif(llamacpp.available() is not None, reason=str(llamacpp.available()))


@pytest.mark.parametrize(
    "shape", [{}, {"heads": 2, "kv_heads": 1, "head_dim": 16}], ids=["plain", "narrow-heads"]
)  # narrow heads: 2 x 16 channels in a hidden size of 64, as width pruning leaves them
def test_llama_cpp_runs_the_exported_file(tmp_path: Path, shape: dict) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    from models.ggml_blocks import quantize
    from models.gguf_export import export_gguf
    from models.tiny import llama_config
    from tests.tiny import make_bpe_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(make_bpe_tokenizer_dir(tmp_path / "tok")))
    torch.manual_seed(0)
    cfg = llama_config(len(tok), hidden=64, tie_word_embeddings=True, **shape)
    model = LlamaForCausalLM(cfg).eval()
    path = export_gguf(model, tok, tmp_path / "m.gguf", "q8_0")
    deq = LlamaForCausalLM(model.config).eval()
    deq.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in deq.parameters():
            if p.dim() == 2:
                p.copy_(quantize(p, "q8_0", reference=True).dequantize())
    ids = np.random.default_rng(0).integers(3, len(tok), (3, 24))
    with torch.no_grad():
        logits = deq(input_ids=torch.from_numpy(ids)).logits[:, :-1].double()
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(ids[:, 1:]).reshape(-1)
        )
    torch_ppl = math.exp(float(ce))
    with llamacpp.open_gguf(str(path), n_ctx=64, threads=1) as llm:
        r = llamacpp.nll(llm, ids)
        gen = llamacpp.generate(llm, ids[0, :8].tolist(), 4)
    assert r["tokens"] == ids[:, 1:].size
    # llama.cpp quantizes activations to 8 bits in Q8_0 dot products and keeps an f16 KV cache
    assert r["ppl"] == pytest.approx(torch_ppl, rel=0.02)
    assert len(gen["ids"]) == 4 and all(0 <= t < len(tok) for t in gen["ids"])
    with torch.no_grad():
        top = deq(input_ids=torch.from_numpy(ids[:1, :8])).logits[0, -1].topk(2).indices
    assert gen["ids"][0] in top.tolist()  # greedy: torch's top token (or a near tie)
