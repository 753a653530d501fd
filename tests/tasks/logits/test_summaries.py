"""Sequence-level KD data: the teacher's greedy summaries of training articles, cached with the
logit cache (tasks/logits/summaries.py), and handed to the student as extra training blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_quality import GateFailed, gate
from models.loading_config import ModelSpec
from tasks.distill.data import CacheReader, read_blocks
from tasks.distill.distill import summary_blocks
from tasks.ingest.ingest import ingest
from tasks.logits.cache import cache_logits
from tasks.logits.config import LogitCacheConfig
from tasks.logits.summaries import SUMMARIES, read_summary_blocks, training_documents
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import news_docs, tokenized_pairs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog


def test_teacher_summaries_are_cached_gated_and_train_on_the_summary_only(
    catalog: Catalog, tmp_path: Path
) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    tokenized_pairs(catalog, tmp_path, spec)
    tokens = catalog.get("tokens", "pairs", 1)
    table = pq.read_table(tokens.ref.files(), columns=["split", "doc_ids"], partitioning=None)
    train_docs = {d for s, ds in zip(table.column("split").to_pylist(),
                                     table.column("doc_ids").to_pylist(), strict=True)
                  if s == "train" for d in ds}  # fmt: skip
    held_docs = {d for ds in table.column("doc_ids").to_pylist() for d in ds} - train_docs
    assert held_docs  # the data has held-out documents for the check below to mean something

    cfg = LogitCacheConfig(mode="topk", k=4, shard_blocks=4, summaries=5,
                           summary_max_new_tokens=6, summary_batch=2)  # fmt: skip
    (ref,) = cache_logits("pairs", catalog, spec, cfg, progress=False).refs
    assert gate("logits", ref, catalog).passed
    root = Path(ref.path)
    manifest = json.loads((root / SUMMARIES / "manifest.json").read_text())
    assert manifest["documents"] == manifest["blocks"] == 5 and len(manifest["shards"]) == 3
    docs = [d for s in manifest["shards"] for d in s["docs"]]
    assert docs == sorted(docs) and set(docs) <= train_docs  # never a held-out article
    assert docs == [i for i, _ in training_documents(catalog, tokens, 5)]

    ids, mask = read_summary_blocks(root)  # type: ignore[misc]
    assert ids.shape == mask.shape == (5, 32)
    reader = CacheReader(root / SUMMARIES)
    checked = 0
    for b in range(5):
        on = np.flatnonzero(mask[b])
        t = reader.block(b)
        assert t.positions == 32
        mass = t.mass()
        if len(on) == 0:  # an empty summary: kept, but taught nothing
            assert manifest["empty"] > 0
            continue
        start, end = int(on[0]), int(on[-1]) + 1
        assert (np.diff(on) == 1).all() and end - start <= 6
        # position t holds the teacher's distribution of token t + 1: its top-1 is the greedy
        # token the teacher wrote, over exactly the summary's tokens
        np.testing.assert_array_equal(t.ids[start - 1 : end - 1, 0], ids[b, start:end])
        np.testing.assert_allclose(mass[start - 1 : end - 1], 1.0, atol=2e-3)
        assert (mass[: start - 1] == 0).all() and (mass[end - 1 :] == 0).all()
        checked += 1
    assert checked == 5 - manifest["empty"] > 0

    # the student gets them as training blocks, with their targets from the summaries reader
    blocks = read_blocks([(tokens.ref.key, tokens.ref.files())])
    n = len(blocks.input_ids)
    more, readers, extra = summary_blocks(
        blocks, [CacheReader(root)], [catalog.get("logits", "pairs", 1)]
    )
    assert readers is not None and len(readers) == 2
    assert len(more.input_ids) == n + 5 and (more.source[n:] == 1).all()
    kept = [b for b in range(5) if mask[b, 1:].any()]  # blocks with a loss
    assert extra.tolist() == [n + b for b in kept]
    assert set(extra) <= set(more.train()) and not set(extra) & set(more.test())

    # the gate reads the summary shards as it reads the others
    victim = next((root / SUMMARIES).glob("shard-*/input_ids.npy"))
    victim.write_bytes(victim.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(GateFailed):
        gate("logits", ref, catalog)


def test_no_summaries_for_language_modelling_snapshots(catalog: Catalog, tmp_path: Path) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    r = ingest(str(write_jsonl(tmp_path / "in.jsonl", news_docs(20))), "news", catalog, progress=False)  # fmt: skip
    gate("raw", r.ref, catalog)
    for ref in tokenize("news", catalog, spec, TokensConfig(block_size=16, pairs="lm"),
                        progress=False).refs:  # fmt: skip
        gate("tokens", ref, catalog)
    assert training_documents(catalog, catalog.get("tokens", "news", 1), 5) == []
