"""Tiny, randomly initialised models built from configs: no hub, a few seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "and",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "this",
    "be",
    "are",
    "were",
    "has",
    "had",
    "news",
    "report",
    "said",
    "year",
    "people",
    "government",
    "police",
    "city",
    "court",
    "state",
    "new",
    "first",
    "last",
    "two",
    "president",
    "minister",
    "company",
    "market",
    "week",
    "day",
    "time",
    "game",
    "team",
    "season",
    "world",
    "country",
]


def make_tokenizer_dir(path: Path, extra_words: tuple[str, ...] = ()) -> Path:
    """A word-level tokenizer over WORDS (+ extra): fast, deterministic, offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<eos>"]
    vocab = {tok: i for i, tok in enumerate([*specials, *WORDS, *extra_words, ".", ",", ":"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return path


def make_tiny_llama(path: Path, vocab_size: int | None = None, seed: int = 0) -> Path:
    """A 2-layer Llama-style causal LM with the tokenizer in `path` (made if absent)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not (path / "tokenizer.json").exists():
        make_tokenizer_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(path))
    return path
