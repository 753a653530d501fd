"""Small model configs, and a tiny randomly initialised teacher with a real tokenizer for
`llm4all demo --tiny`: the whole DAG runs in a couple of minutes, with every stage doing its
real work on small models. Tests and benchmarks build their models from these configs too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.loading import load_tokenizer
from models.loading_config import ModelSpec


def llama_config(
    vocab_size: int, *, hidden: int = 64, ffn: int | None = None, layers: int = 2, heads: int = 4,
    kv_heads: int = 2, positions: int = 1024, **extra: Any,
) -> Any:  # fmt: skip
    """A LlamaConfig of this shape (`ffn` defaults to 2 × hidden); `extra` is passed through."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=positions, **extra,
    )  # fmt: skip


def bert_config(vocab_size: int, **extra: Any) -> Any:
    """A 1-layer BertConfig of width 32 (an encoder for sentence-embedding and NLI tests)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, **extra,
    )  # fmt: skip


def make_tiny_teacher(path: Path, tokenizer_from: ModelSpec, seed: int = 0) -> Path:
    """A 2-layer Llama (width 64) using `tokenizer_from`'s tokenizer, saved in `path`
    (reused when it is already there)."""
    import torch
    from transformers import LlamaForCausalLM

    if (path / "config.json").exists():
        return path
    tokenizer = load_tokenizer(tokenizer_from)
    torch.manual_seed(seed)
    config = llama_config(
        len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    partial = path.with_name(path.name + ".partial")
    LlamaForCausalLM(config).save_pretrained(str(partial), safe_serialization=True)
    tokenizer.save_pretrained(str(partial))
    partial.rename(path)
    return path
