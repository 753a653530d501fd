from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from data_quality import GateFailed, gate
from models import logit_cache as lc
from models.loading_config import ModelSpec
from tasks.ingest.ingest import ingest
from tasks.logits.cache import cache_logits
from tasks.logits.config import LogitCacheConfig
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama, make_tokenizer_dir
from warehouse import Catalog


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_llama(root / "teacher")
    make_tokenizer_dir(root / "other", extra_words=("zebra",))
    make_tiny_llama(root / "other")  # a different tokenizer
    shutil.copytree(root / "teacher", root / "small-vocab")
    make_tiny_llama(root / "small-vocab", vocab_size=20)  # same tokenizer, too few rows
    return root


def _tokens(catalog: Catalog, tmp_path: Path, teacher: ModelSpec, docs: int = 60) -> None:
    records = news_docs(docs)
    r = ingest(str(write_jsonl(tmp_path / "in.jsonl", records)), "news", catalog, progress=False)
    gate("raw", r.ref, catalog)
    for ref in tokenize("news", catalog, teacher, TokensConfig(block_size=16), progress=False).refs:
        gate("tokens", ref, catalog)


def _shard_bytes(ref_path: str) -> dict[str, bytes]:
    root = Path(ref_path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("shard-*/*.npy"))}


@pytest.mark.parametrize("mode", ["topk", "sampled"])
def test_cache_covers_every_position_and_passes_its_gate(
    tmp_path: Path, catalog: Catalog, models_dir: Path, mode: str
) -> None:
    teacher = ModelSpec(path=str(models_dir / "teacher"))
    _tokens(catalog, tmp_path, teacher)
    cfg = LogitCacheConfig(mode=mode, k=4, samples=16, shard_blocks=3, batch_blocks=2)
    result = cache_logits("news", catalog, teacher, cfg, progress=False)
    (ref,) = result.refs
    blocks = catalog.get("tokens", "news", 1).ref.rows
    assert ref.rows == blocks * 16 == result.positions
    manifest = lc.read_manifest(Path(ref.path))
    assert manifest["tokens"] == "tokens/news@1" and manifest["mode"] == mode
    assert manifest["id_dtype"] == "uint16" and len(manifest["shards"]) == -(-blocks // 3)
    assert gate("logits", ref, catalog).passed
    assert catalog.get("logits", "news", 1).parent == "tokens/news@1"
    again = cache_logits("news", catalog, teacher, cfg, progress=False)
    assert again.refs == [] and again.skipped == ["tokens/news@1"]


def test_nothing_to_cache_answers_from_the_catalog_what_cache_logits_would_do(
    tmp_path: Path, catalog: Catalog, models_dir: Path
) -> None:
    from tasks.logits.pending import cached_keys, nothing_to_cache

    teacher = ModelSpec(path=str(models_dir / "teacher"))
    tcfg, cfg = TokensConfig(block_size=16), LogitCacheConfig(mode="topk", k=4, shard_blocks=4)
    _tokens(catalog, tmp_path, teacher)
    assert cached_keys(catalog, "news") == set()
    assert nothing_to_cache(catalog, "news", teacher, tcfg, cfg) is None  # not cached yet
    (ref,) = cache_logits("news", catalog, teacher, cfg, progress=False).refs
    assert nothing_to_cache(catalog, "news", teacher, tcfg, cfg) is None  # its gate is pending
    gate("logits", ref, catalog)
    assert cached_keys(catalog, "news") == {catalog.get("logits", "news", 1).meta["cache_key"]}
    done = nothing_to_cache(catalog, "news", teacher, tcfg, cfg)
    assert done == {
        "tokens": {"dataset": "news", "refs": [], "skipped": ["raw/news@1"], "over_budget": {}},
        "logits": {
            "dataset": "news", "refs": [], "skipped": ["tokens/news@1"], "positions": 0,
            "seconds": 0.0, "bytes_per_token": None,
        },
        "gates": [],
    }  # fmt: skip
    # the shape of what the flow's tasks return
    assert done["tokens"] == tokenize("news", catalog, teacher, tcfg, progress=False).to_dict()
    again = cache_logits("news", catalog, teacher, cfg, progress=False)
    assert done["logits"].keys() == again.to_dict().keys()
    other = cfg.model_copy(update={"k": 8})  # another cache key: cache_logits has work
    assert nothing_to_cache(catalog, "news", teacher, tcfg, other) is None
    assert [
        r.version for r in cache_logits("news", catalog, teacher, other, progress=False).refs
    ] == [2]


def test_resume_after_a_crash_gives_the_same_bytes(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = ModelSpec(path=str(models_dir / "teacher"))
    cfg = LogitCacheConfig(mode="sampled", samples=16, shard_blocks=2, batch_blocks=1)
    clean = Catalog(tmp_path / "clean")
    _tokens(clean, tmp_path, teacher)
    (whole,) = cache_logits("news", clean, teacher, cfg, progress=False).refs

    crashed = Catalog(tmp_path / "crashed")
    _tokens(crashed, tmp_path, teacher)
    real_write = lc.write_shard
    import tasks.logits.cache as mod

    def write_until_the_disk_fills(root: Path, index: int, targets: lc.SparseTargets) -> dict:
        if index == 3:
            raise lc.LogitCacheError("could not write shard 3: No space left on device")
        return real_write(root, index, targets)

    monkeypatch.setattr(mod, "write_shard", write_until_the_disk_fills)
    with pytest.raises(lc.LogitCacheError, match="No space left"):
        cache_logits("news", crashed, teacher, cfg, progress=False)
    assert crashed.versions("logits", "news") == []  # nothing half-made is visible
    monkeypatch.setattr(mod, "write_shard", real_write)
    (resumed,) = cache_logits("news", crashed, teacher, cfg, progress=False).refs
    assert _shard_bytes(resumed.path) == _shard_bytes(whole.path)


def test_a_teacher_with_another_tokenizer_is_refused(
    tmp_path: Path, catalog: Catalog, models_dir: Path
) -> None:
    _tokens(catalog, tmp_path, ModelSpec(path=str(models_dir / "teacher")))
    with pytest.raises(lc.LogitCacheError, match="re-tokenize"):
        cache_logits("news", catalog, ModelSpec(path=str(models_dir / "other")), progress=False)


def test_a_model_smaller_than_its_tokenizer_is_refused(
    tmp_path: Path, catalog: Catalog, models_dir: Path
) -> None:
    _tokens(catalog, tmp_path, ModelSpec(path=str(models_dir / "teacher")))
    with pytest.raises(lc.LogitCacheError, match="does not match the model"):
        cache_logits(
            "news", catalog, ModelSpec(path=str(models_dir / "small-vocab")), progress=False
        )


def test_no_tokens_no_cache(catalog: Catalog, models_dir: Path) -> None:
    with pytest.raises(lc.LogitCacheError, match="no tokens snapshot"):
        cache_logits("news", catalog, ModelSpec(path=str(models_dir / "teacher")), progress=False)


def test_the_gate_catches_a_corrupted_shard(
    tmp_path: Path, catalog: Catalog, models_dir: Path
) -> None:
    teacher = ModelSpec(path=str(models_dir / "teacher"))
    _tokens(catalog, tmp_path, teacher)
    cfg = LogitCacheConfig(mode="topk", k=4, shard_blocks=2)
    (ref,) = cache_logits("news", catalog, teacher, cfg, progress=False).refs
    values = Path(ref.path) / "shard-00001" / "values.npy"
    array = np.load(values)
    array[0, 0] = np.float16(np.nan)
    np.save(values, array)
    with pytest.raises(GateFailed) as e:
        gate("logits", ref, catalog)
    failing = {o.column for o in e.value.result.failures}
    assert {"finite", "checksums_match"} <= failing
    assert catalog.get("logits", "news", 1).gate_passed is False
