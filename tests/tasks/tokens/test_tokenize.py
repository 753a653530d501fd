from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.loading import load_tokenizer
from models.loading_config import ModelSpec
from tasks.ingest.ingest import ingest
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import TokenizeError, render, split_of, tokenize
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return ModelSpec(path=str(make_tiny_llama(tmp_path_factory.mktemp("tiny") / "teacher")))


def _docs(n: int, prefix: str = "") -> list[dict]:
    return news_docs(n, prefix)


def _ingest_and_pass(catalog: Catalog, path: Path, records: list[dict], name: str = "news") -> None:
    r = ingest(str(write_jsonl(path, records)), name, catalog, progress=False)
    with catalog.writing():
        catalog.set_gate(r.ref, True, None)


def test_pairs_train_on_the_summary_only(teacher: ModelSpec) -> None:
    tok = load_tokenizer(teacher)
    cfg = TokensConfig(template="{document} . summary : {summary}")
    ids, mask = render("the police said", "court news", tok, cfg)
    assert ids[-1] == tok.eos_token_id and len(ids) == len(mask)
    n_summary = len(tok("court news", add_special_tokens=False)["input_ids"])
    assert mask == [0] * (len(ids) - n_summary - 1) + [1] * (n_summary + 1)
    ids_lm, mask_lm = render("the police said", "court news", tok, TokensConfig(pairs="lm"))
    assert mask_lm == [1] * len(ids_lm) and ids_lm == [*tok("the police said")["input_ids"], 2]


def test_blocks_are_full_separated_by_eos_and_padded_at_the_end(
    tmp_path: Path, catalog: Catalog, teacher: ModelSpec
) -> None:
    _ingest_and_pass(catalog, tmp_path / "a.jsonl", _docs(40))
    cfg = TokensConfig(block_size=16, validation_share=0.25)
    (ref,) = tokenize("news", catalog, teacher, cfg, progress=False).refs
    table = ref.read()
    ids = np.stack(table.column("input_ids").to_numpy(zero_copy_only=False))
    mask = np.stack(table.column("loss_mask").to_numpy(zero_copy_only=False))
    assert ids.shape[1] == 16
    meta = catalog.get("tokens", "news", 1).meta
    held_out = meta["selection_documents"] + meta["test_documents"]
    assert meta["documents"] == 40 and meta["train_documents"] + held_out == 40
    # Every document contributes its tokens + EOS; only the padding of the last block per
    # split carries no loss.
    assert (ids == 2).sum() >= 40 and mask.sum() == meta["tokens"]
    assert set(table.column("split").to_pylist()) == {"train", "selection", "test"}
    assert 0 < held_out < 40
    # selection and test never share a document: blocks are packed per split
    splits = table.column("split").to_pylist()
    docs = {s: {d for sp, ds in zip(splits, table.column("doc_ids").to_pylist(), strict=True) if sp == s for d in ds} for s in ("selection", "test")}  # fmt: skip
    assert docs["selection"] and docs["test"] and not docs["selection"] & docs["test"]


def test_splits_are_stable_and_reruns_skip_done_versions(
    tmp_path: Path, catalog: Catalog, teacher: ModelSpec
) -> None:
    _ingest_and_pass(catalog, tmp_path / "a.jsonl", _docs(30))
    first = tokenize("news", catalog, teacher, TokensConfig(block_size=16), progress=False)
    again = tokenize("news", catalog, teacher, TokensConfig(block_size=16), progress=False)
    assert len(first.refs) == 1 and again.refs == [] and again.skipped == ["raw/news@1"]
    _ingest_and_pass(catalog, tmp_path / "b.jsonl", _docs(30) + _docs(10, "new"))
    more = tokenize("news", catalog, teacher, TokensConfig(block_size=16), progress=False)
    (ref,) = more.refs
    assert catalog.get("tokens", "news", 2).parent == "raw/news@2"
    docs = {d for ds in ref.read().column("doc_ids").to_pylist() for d in ds}
    assert docs <= {f"new{i}" for i in range(10)}  # only the delta is tokenized
    cfg = TokensConfig(validation_share=0.05, selection_share=0.5)
    assert split_of("ff" * 32, cfg) == "train"
    assert split_of("00000000" + "f" * 56, cfg) == "test"
    assert split_of("00000000" + "f" * 8 + "0" * 48, cfg) == "selection"


def test_nothing_gated_means_nothing_to_tokenize(
    tmp_path: Path, catalog: Catalog, teacher: ModelSpec
) -> None:
    with pytest.raises(TokenizeError, match="passed its gate"):
        tokenize("news", catalog, teacher, progress=False)
    ingest(str(write_jsonl(tmp_path / "a.jsonl", _docs(3))), "news", catalog, progress=False)
    with pytest.raises(TokenizeError, match="passed its gate"):  # ingested but not gated
        tokenize("news", catalog, teacher, progress=False)


# ------------------------------------------------------------------ unattended operation
def test_another_block_size_fails_the_gate_before_anything_is_written(
    tmp_path: Path, catalog: Catalog, teacher: ModelSpec
) -> None:
    from data_quality import GateFailed, gate

    _ingest_and_pass(catalog, tmp_path / "a.jsonl", _docs(20))
    for ref in tokenize("news", catalog, teacher, TokensConfig(block_size=16), progress=False).refs:
        gate("tokens", ref, catalog)
    _ingest_and_pass(catalog, tmp_path / "b.jsonl", _docs(20, prefix="court"))
    with pytest.raises(GateFailed, match=r"block_size.*tokens/news@1 \(block_size=16\)"):
        tokenize("news", catalog, teacher, TokensConfig(block_size=32), progress=False)
    assert [v.ref.key for v in catalog.versions("tokens", "news")] == ["tokens/news@1"]
    assert not list((catalog.lake / ".tmp").glob("*"))  # nothing staged either


def test_documents_over_the_budget_are_counted_and_tokenized_by_later_runs(
    tmp_path: Path, catalog: Catalog, teacher: ModelSpec
) -> None:
    _ingest_and_pass(catalog, tmp_path / "a.jsonl", _docs(12))
    cfg = TokensConfig(block_size=16, max_documents=5)
    seen: list[str] = []
    left = []
    for _ in range(3):
        result = tokenize("news", catalog, teacher, cfg, progress=False)
        (ref,) = result.refs
        seen += [d for docs in ref.read().column("doc_ids").to_pylist() for d in docs]
        left.append(result.over_budget.get("raw/news@1", 0))
    assert left == [7, 2, 0]
    again = tokenize("news", catalog, teacher, cfg, progress=False)
    assert again.refs == [] and again.skipped == ["raw/news@1"]  # done only now
    metas = [v.meta for v in catalog.versions("tokens", "news")]
    assert [m["documents"] for m in metas] == [5, 5, 2]
    assert [m["source_offset"] for m in metas] == [0, 5, 10]
    assert sorted(set(seen)) == sorted(str(i) for i in range(12))  # each once, none lost


def test_tokens_of_raw_data_are_superseded_once_it_is_curated(
    tmp_path: Path, catalog: Catalog, teacher: ModelSpec
) -> None:
    from data_quality import gate
    from tasks.curate.config import DedupConfig
    from tasks.curate.curate import curate_next
    from tasks.tokens.pending import trainable_tokens

    _ingest_and_pass(catalog, tmp_path / "a.jsonl", [*_docs(20), *_docs(5)])  # 5 repeats
    cfg = TokensConfig(block_size=16)
    (raw_tokens,) = tokenize("news", catalog, teacher, cfg, progress=False).refs
    gate("tokens", raw_tokens, catalog)
    assert [v.ref.key for v in trainable_tokens(catalog, "news")] == ["tokens/news@1"]
    curated = curate_next("news", catalog, DedupConfig(), ["exact"]).ref
    assert curated is not None
    gate("curated", curated, catalog)
    (cur_tokens,) = tokenize("news", catalog, teacher, cfg, progress=False).refs
    gate("tokens", cur_tokens, catalog)
    assert catalog.get("tokens", "news", 2).meta["source"] == "curated/news@1"
    # the raw tokens no longer reach training: only the curated ones do
    assert [v.ref.key for v in trainable_tokens(catalog, "news")] == ["tokens/news@2"]
