"""Small builders for test inputs."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, records: list[dict | bytes | str]) -> Path:
    """Write records as JSON lines; bytes/str items are written verbatim (for broken lines)."""
    with open(path, "wb") as f:
        for r in records:
            if isinstance(r, bytes):
                f.write(r + b"\n")
            elif isinstance(r, str):
                f.write(r.encode() + b"\n")
            else:
                f.write(json.dumps(r).encode() + b"\n")
    return path


def good_records(n: int, prefix: str = "doc") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": f"{prefix} number {i}: a perfectly ordinary sentence."}
        for i in range(n)
    ]


NEWS_WORDS = [
    "the",
    "news",
    "said",
    "police",
    "city",
    "court",
    "state",
    "new",
    "president",
    "minister",
    "market",
    "team",
]


def news_docs(n: int, prefix: str = "") -> list[dict]:
    """n distinct short documents in words the tiny test tokenizer knows (tests/tiny.py)."""
    return [
        {
            "id": f"{prefix}{i}",
            "text": " ".join(
                [prefix] * bool(prefix)
                + [NEWS_WORDS[(i * 7 + j) % len(NEWS_WORDS)] for j in range(4 + i % 9)]
                + [str(i)]
            ),
        }
        for i in range(n)
    ]


def tokenized_pairs(catalog, tmp_path: Path, teacher, n: int = 40) -> None:
    """Dataset `pairs`: n (article, first-sentence summary) rows ingested, tokenized in 32-token
    blocks (30% held out) with `teacher`'s tokenizer, each snapshot gated."""
    from data_quality import gate
    from tasks.ingest.ingest import ingest
    from tasks.tokens.config import TokensConfig
    from tasks.tokens.tokenize import tokenize

    docs = [d | {"summary": d["text"].split(".")[0]} for d in news_docs(n)]
    r = ingest(str(write_jsonl(tmp_path / "pairs.jsonl", docs)), "pairs", catalog, progress=False)
    gate("raw", r.ref, catalog)
    tcfg = TokensConfig(block_size=32, validation_share=0.3)
    for ref in tokenize("pairs", catalog, teacher, tcfg, progress=False).refs:
        gate("tokens", ref, catalog)


def distill_inputs(catalog, tmp_path: Path, teacher, cache: bool = True) -> None:
    """Dataset `news`: 60 documents ingested, tokenized in 16-token blocks (20% held out) with
    `teacher`'s tokenizer and, with `cache`, a sampled logit cache of it; each snapshot gated."""
    from data_quality import gate
    from tasks.ingest.ingest import ingest
    from tasks.logits.cache import cache_logits
    from tasks.logits.config import LogitCacheConfig
    from tasks.tokens.config import TokensConfig
    from tasks.tokens.tokenize import tokenize

    r = ingest(str(write_jsonl(tmp_path / "in.jsonl", news_docs(60))), "news", catalog, progress=False)  # fmt: skip
    gate("raw", r.ref, catalog)
    tcfg = TokensConfig(block_size=16, validation_share=0.2)
    for ref in tokenize("news", catalog, teacher, tcfg, progress=False).refs:
        gate("tokens", ref, catalog)
    if cache:
        lcfg = LogitCacheConfig(mode="sampled", samples=16, shard_blocks=4)
        for ref in cache_logits("news", catalog, teacher, lcfg, progress=False).refs:
            gate("logits", ref, catalog)


PEOPLE = [
    ("Maria Lopez", "she"), ("John Carter", "he"), ("Ahmed Khan", "he"), ("Emma Brown", "she"),
    ("Lucas Silva", "he"), ("Hannah Weber", "she"), ("Omar Haddad", "he"), ("Grace Okafor", "she"),
]  # fmt: skip
PLACES = ["Denver", "Lagos", "Glasgow", "Osaka", "Lyon", "Perth", "Quito", "Tallinn"]
MONTHS = ["March", "June", "October", "January"]


def factuality_pair(i: int) -> dict[str, str]:
    """Pair i: a short news article and a faithful two-sentence summary of it."""
    name, pron = PEOPLE[i % len(PEOPLE)]
    place, month = PLACES[(i * 3) % len(PLACES)], MONTHS[i % len(MONTHS)]
    homes, people = 20 + 7 * i, 150 + 11 * i
    other, _ = PEOPLE[(i + 3) % len(PEOPLE)]
    document = (
        f"{name} arrived in {place} on Monday to open the new library. "
        f"{pron.capitalize()} said the council had approved {homes} new homes near the river. "
        f"The plan was announced in {month} after {people} residents signed a petition. "
        f"{other}, who leads the residents' group, was not invited to the meeting. "
        f"Officials in {place} did not comment on the cost of the project."
    )
    summary = (
        f"{name} said the council approved {homes} new homes in {place}. "
        f"The plan followed a petition signed by {people} residents in {month}."
    )
    return {"document": document, "summary": summary}


def default_sigint() -> None:
    """`preexec_fn` for a child that the test stops with SIGINT (`llm4all serve`). A shell
    without job control starts background jobs with SIGINT ignored (`make test &` in a
    script), a child inherits that, and a Python started so keeps ignoring it: the SIGINT
    would be lost and the child would outlive the test."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
