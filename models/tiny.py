"""A tiny randomly initialised teacher with a real tokenizer, for `llm4all demo --tiny`: the
whole DAG runs in a couple of minutes, with every stage doing its real work on small models."""

from __future__ import annotations

from pathlib import Path

from models.loading import load_tokenizer
from models.loading_config import ModelSpec


def make_tiny_teacher(path: Path, tokenizer_from: ModelSpec, seed: int = 0) -> Path:
    """A 2-layer Llama (width 64) using `tokenizer_from`'s tokenizer, saved in `path`
    (reused when it is already there)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (path / "config.json").exists():
        return path
    tokenizer = load_tokenizer(tokenizer_from)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
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
