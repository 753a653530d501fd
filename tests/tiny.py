"""Tiny, randomly initialised models built from configs: no hub, a few seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

# The vocabulary of the tiny tokenizers (a word-level one for the LMs, a BERT one for the
# sentence-embedding model).
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
    "his",
    "her",
    "they",
    "price",
    "music",
    "film",
    "school",
    "water",
    "river",
    "mountain",
    "cat",
    "dog",
    "bird",
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


def make_bpe_tokenizer_dir(path: Path, vocab_size: int = 320) -> Path:
    """A byte-level BPE tokenizer (GPT-2 style, what a GGUF export writes) trained in memory
    on sentences of WORDS, with a chat template; saved in `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<pad>", "<eos>", "<|im_start|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    text = [
        " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) + f" {i}." for i in range(200)
    ]
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    fast.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<eos>{% endfor %}"
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return path


def make_tiny_llama(
    path: Path, vocab_size: int | None = None, seed: int = 0, hidden_size: int = 32
) -> Path:
    """A 2-layer Llama-style causal LM with the tokenizer in `path` (made if absent).
    (bitsandbytes' NF4 needs hidden_size >= 64 on a CPU: its blocks hold 64 weights.)"""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from models.tiny import llama_config

    if not (path / "tokenizer.json").exists():
        make_tokenizer_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(seed)
    config = llama_config(
        vocab_size or len(tokenizer), hidden=hidden_size, positions=256,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(str(path))
    return path


def make_tiny_sentence_transformer(root: Path) -> str:
    """A tiny random BERT wrapped as a sentence-transformers model, saved to a folder."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel, BertTokenizerFast

    from models.tiny import bert_config

    hf = root / "hf"
    hf.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    BertModel(bert_config(len(vocab))).save_pretrained(hf)
    tok.save_pretrained(hf)
    word = models.Transformer(str(hf), max_seq_length=64)
    pool = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    out = root / "st"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(out))
    return str(out)


def tiny_pipeline_config(folder: Path, **sections: dict) -> Path:
    """The smallest config in which every stage does its real work (tiny teacher, 16-token
    blocks, a few steps), written to `folder/cfg.yaml`; `sections` update it per top-level key
    (e.g. `distill={"max_steps": 4}`). For the served-deployment tests and the stress/idle
    benches."""
    import yaml

    cfg: dict[str, dict] = {
        "teacher": {"path": str(make_tiny_llama(folder / "teacher"))},
        "dedup": {"semantic": {"enabled": False}, "quality": {"enabled": False}},
        "tokens": {"block_size": 16, "validation_share": 0.25},
        "logits": {"samples": 8, "shard_blocks": 8},
        "distill": {"max_steps": 2, "batch_blocks": 2, "eval_every": 2, "eval_speed_tokens": 4,
                    "rouge_pairs": 0},
        "refresh": {"steps": 2},
        "gates": {"student": {"max_ppl_ratio": 1e6}, "curated": {"min_rows_for_shares": 1000},
                  "data_docs": False},
    }  # fmt: skip
    for key, values in sections.items():
        cfg[key] = cfg.get(key, {}) | values
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_tiny_cross_encoder_base(folder: Path) -> str:
    """A 2-layer, 32-wide random BERT with all-MiniLM-L6-v2's tokenizer (from the installed
    package), saved to `folder`: a base for train-factuality that trains in seconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tasks.factcheck.classifier import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
