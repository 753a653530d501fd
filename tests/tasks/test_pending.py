"""tasks/pending.py: what a pipeline or refresh run would do, from the catalog alone, against a
dataset built stage by stage (ingest, curate, tokens, logits, distill, each gated): nothing when
nothing changed; work (None) when a source, a setting or the catalog says otherwise."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from data_quality import GatesConfig, gate
from models.loading_config import ModelSpec
from tasks.curate.config import DedupConfig
from tasks.curate.curate import curate_next
from tasks.distill.config import DistillConfig
from tasks.distill.distill import distill
from tasks.distill.pending import already_distilled
from tasks.ingest.config import IngestConfig
from tasks.ingest.ingest import ingest
from tasks.logits.cache import cache_logits
from tasks.logits.config import LogitCacheConfig
from tasks.pending import data_unchanged, nothing_to_run
from tasks.quantize.config import QuantizeConfig
from tasks.quantize.pending import already_quantized, trained_on
from tasks.quantize.quantize import quantize_model
from tasks.refresh.config import RefreshConfig
from tasks.refresh.refresh import refresh_student
from tasks.tokens.config import TokensConfig
from tasks.tokens.tokenize import tokenize
from tests.helpers import news_docs, write_jsonl
from tests.tiny import make_tiny_llama
from warehouse import Catalog

GATES = GatesConfig.model_validate(
    {"student": {"max_ppl_ratio": 1e6}, "curated": {"min_rows_for_shares": 1000}}
)


@dataclass
class Built:
    home: Path
    source: Path
    teacher: ModelSpec
    settings: dict[str, Any]  # the sections nothing_to_run takes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Dataset `news` as a pipeline leaves it: every stage done and gated, a student registered."""
    root = tmp_path_factory.mktemp("pending")
    teacher = ModelSpec(path=str(make_tiny_llama(root / "teacher")))
    settings: dict[str, Any] = {
        "teacher": teacher,
        "ingest": IngestConfig(),
        "dedup": DedupConfig.model_validate(
            {"semantic": {"enabled": False}, "quality": {"enabled": False}}
        ),
        "tokens": TokensConfig(block_size=16, validation_share=0.25),
        "logits": LogitCacheConfig(samples=8, shard_blocks=8),
        "distill": DistillConfig(
            max_steps=2, batch_blocks=2, eval_every=2, eval_speed_tokens=4, rouge_pairs=0
        ),
        "quantize": QuantizeConfig(eval_blocks=4, speed_blocks=2, speed_tokens=2, device="cpu"),
    }
    catalog = Catalog(root / "home")
    source = write_jsonl(root / "news.jsonl", news_docs(40))
    gate(
        "raw", ingest(str(source), "news", catalog, settings["ingest"], progress=False).ref, catalog
    )
    curated = curate_next("news", catalog, settings["dedup"], ["exact", "near"])
    gate("curated", curated.ref, catalog, GATES)
    for ref in tokenize("news", catalog, teacher, settings["tokens"], progress=False).refs:
        gate("tokens", ref, catalog)
    for ref in cache_logits("news", catalog, teacher, settings["logits"], progress=False).refs:
        gate("logits", ref, catalog)
    distill("news", catalog, teacher, settings["distill"], GATES, progress=False)
    return Built(root / "home", source, teacher, settings)


def _ask(built: Built, sources: list[Path], home: Path | None = None, **changed: Any) -> Any:
    settings = built.settings | changed
    return nothing_to_run(
        Catalog(home or built.home), "news", [str(s) for s in sources], **settings
    )


def _ask_refresh(
    built: Built, sources: list[Path], home: Path | None = None, **changed: Any
) -> Any:
    return _ask(
        built, sources, home, **{"refresh": RefreshConfig(steps=2, warmup_steps=0)} | changed
    )


def _copy(built: Built, tmp_path: Path) -> Catalog:
    """A copy of the built home (paths in it are relative), for a test that changes it."""
    shutil.copytree(built.home, tmp_path / "home")
    return Catalog(tmp_path / "home")


def test_nothing_changed_is_nothing_to_do(built: Built) -> None:
    out = _ask(built, [built.source])
    assert out is not None
    (ingested,) = out["ingest"]
    assert ingested["source"] == str(built.source.resolve()) and ingested["ref"] is None
    assert (ingested["rows_in"], ingested["accepted"], ingested["already_present"]) == (40, 0, 40)
    assert ingested["unchanged_since"] == "raw/news@1"
    curate = {"dataset": "news", "versions": [], "rows": 0, "kept": 0}
    assert out["curate"] == curate | {"filters": ["exact", "near", "factuality"]}
    assert out["tokens"]["skipped"] == ["curated/news@1"] and out["tokens"]["refs"] == []
    assert out["logits"]["skipped"] == ["tokens/news@1"] and out["logits"]["refs"] == []
    assert out["gates"] == [] and out["quantize"] == []
    d = out["distill"]
    assert d["skipped"] and d["model"]["key"] == "models/news-student@1" and d["train"] is None
    assert _ask(built, []) is not None  # no source to ingest: the same
    copy = built.source.parent / "copy.jsonl"
    shutil.copyfile(built.source, copy)
    assert _ask(built, [copy]) is not None  # the same bytes under another name


def test_a_changed_file_is_work(built: Built, tmp_path: Path) -> None:
    changed = tmp_path / "news.jsonl"
    changed.write_bytes(built.source.read_bytes() + b'{"id": "late", "text": "team market 99"}\n')
    assert _ask(built, [changed]) is None
    assert _ask(built, [built.source, changed]) is None  # every source must be unchanged
    assert _ask(built, [tmp_path / "missing.jsonl"]) is None  # the flow says it is missing


@pytest.mark.parametrize(
    ("section", "update"),
    [
        ("distill", {"max_steps": 3}),  # another student: its run key is not registered
        ("logits", {"samples": 16}),  # another cache
        ("ingest", {"max_chars": 50}),  # the same bytes may read as other rows
        ("teacher", {"path": "/elsewhere/teacher"}),  # another teacher's cache and student
    ],
)
def test_another_setting_that_changes_the_result_is_work(
    built: Built, section: str, update: dict[str, Any]
) -> None:
    changed = built.settings[section].model_copy(update=update)
    assert _ask(built, [built.source], **{section: changed}) is None


def test_a_setting_outside_every_run_key_is_still_nothing_to_do(built: Built) -> None:
    distill = built.settings["distill"].model_copy(update={"rouge_pairs": 3})  # evaluation only
    assert _ask(built, [built.source], distill=distill) is not None


@pytest.mark.parametrize("kind", ["pipeline", "refresh"])
def test_a_quantized_variant_not_yet_made_is_work_then_nothing(
    built: Built, tmp_path: Path, kind: str
) -> None:
    ask = _ask_refresh if kind == "refresh" else _ask
    catalog = _copy(built, tmp_path)
    quantize = built.settings["quantize"].model_copy(update={"methods": ["dynamic-int8"]})
    assert ask(built, [built.source], catalog.home, quantize=quantize) is None
    quantize_model("news-student", catalog, built.teacher, quantize, GATES, dataset="news",
                   method="dynamic-int8")  # fmt: skip
    out = ask(built, [built.source], catalog.home, quantize=quantize)
    assert out is not None
    (variant,) = out["quantize"]
    assert variant["skipped"] and variant["model"]["key"] == "models/news-student-dynamic-int8@1"
    assert variant["parent"] == "models/news-student@1"
    more = quantize.model_copy(update={"methods": ["dynamic-int8", "int8"]})
    assert ask(built, [built.source], catalog.home, quantize=more) is None  # int8: not made


def test_new_data_in_the_catalog_is_work(built: Built, tmp_path: Path) -> None:
    catalog = _copy(built, tmp_path)
    more = write_jsonl(tmp_path / "more.jsonl", news_docs(10, prefix="court"))
    r = ingest(str(more), "news", catalog, progress=False)
    assert _ask(built, [built.source], catalog.home) is None  # raw@2 waits for its gate
    gate("raw", r.ref, catalog)
    assert _ask(built, [built.source], catalog.home) is None  # ... then for curation
    curated = curate_next("news", catalog, built.settings["dedup"], ["exact", "near"])
    assert _ask(built, [built.source], catalog.home) is None  # ... for its gate
    gate("curated", curated.ref, catalog, GATES)
    assert _ask(built, [built.source], catalog.home) is None  # ... for tokens, logits, a student


def test_already_distilled_is_what_a_distill_run_returns(built: Built) -> None:
    catalog, teacher, cfg = Catalog(built.home), built.teacher, built.settings["distill"]
    done = already_distilled(catalog, "news", teacher, cfg)
    assert done is not None and done.skipped
    assert done.to_dict() == distill("news", catalog, teacher, cfg, GATES).to_dict()
    assert (
        already_distilled(catalog, "news", teacher, cfg.model_copy(update={"max_steps": 3})) is None
    )
    assert already_distilled(catalog, "other", teacher, cfg) is None  # no data: the run says so


def test_already_quantized_is_what_a_quantize_run_returns(built: Built, tmp_path: Path) -> None:
    catalog = _copy(built, tmp_path)
    teacher, cfg = built.teacher, built.settings["quantize"]
    assert trained_on(catalog, "news-student") == "news"
    assert trained_on(catalog, "news-student:1") == "news"
    assert trained_on(catalog, "teacher") is None and trained_on(catalog, "nope") is None
    assert already_quantized(catalog, "news-student", teacher, cfg, None, "dynamic-int8") is None
    quantize_model("news-student", catalog, teacher, cfg, GATES, method="dynamic-int8")
    done = already_quantized(catalog, "news-student", teacher, cfg, None, "dynamic-int8")
    assert done is not None and done.skipped and done.parent == "models/news-student@1"
    again = quantize_model("news-student", catalog, teacher, cfg, GATES, method="dynamic-int8")
    assert done.to_dict() == again.to_dict()
    assert already_quantized(catalog, "news-student", teacher, cfg, "news", "dynamic-int8")
    named = cfg.model_copy(update={"method": "dynamic-int8"})  # the method from the config
    assert already_quantized(catalog, "news-student", teacher, named, None) is not None
    for model, method in (("news-student", "int8"), ("nope", "dynamic-int8"),
                          ("news-student-dynamic-int8", "int8"), ("news-student:x", "int8")):  # fmt: skip
        assert already_quantized(catalog, model, teacher, cfg, None, method) is None, model
    assert already_quantized(catalog, "teacher", teacher, cfg, None, "dynamic-int8") is None


def test_a_refresh_with_no_new_data_is_nothing_to_do(built: Built) -> None:
    out = _ask_refresh(built, [built.source])
    assert out is not None
    pipeline = _ask(built, [built.source])
    data = {k: v for k, v in pipeline.items() if k not in ("distill", "quantize")}
    assert {k: v for k, v in out.items() if k not in ("refresh", "quantize")} == data
    flow = refresh_student("news", Catalog(built.home), built.teacher, built.settings["distill"],
                           RefreshConfig(steps=2, warmup_steps=0), GATES, progress=False)  # fmt: skip
    assert out["refresh"] == flow.to_dict()
    assert out["refresh"]["model"] is None and out["refresh"]["promoted"] == "models/news-student@1"
    assert out["refresh"]["skipped"] == (
        "no tokens snapshot of 'news' newer than models/news-student@1's data"
    )
    assert out["quantize"] == []
    refresh = RefreshConfig(steps=7)  # no data to train on: no setting of the refresh matters
    assert _ask_refresh(built, [built.source], refresh=refresh) is not None


def test_a_refresh_with_a_new_file_or_another_teacher_is_work(built: Built, tmp_path: Path) -> None:
    changed = tmp_path / "news.jsonl"
    changed.write_bytes(built.source.read_bytes() + b'{"id": "late", "text": "team market 99"}\n')
    assert _ask_refresh(built, [changed]) is None
    other = built.teacher.model_copy(update={"path": "/elsewhere/teacher"})
    assert _ask_refresh(built, [built.source], teacher=other) is None  # the flow refuses it


def test_new_tokens_since_the_promoted_student_are_work_until_refreshed(
    built: Built, tmp_path: Path
) -> None:
    catalog = _copy(built, tmp_path)
    more = write_jsonl(tmp_path / "more.jsonl", news_docs(40, prefix="court"))
    r = ingest(str(more), "news", catalog, progress=False)
    assert _ask_refresh(built, [built.source], catalog.home) is None  # raw@2: its gate pending
    gate("raw", r.ref, catalog)
    curated = curate_next("news", catalog, built.settings["dedup"], ["exact", "near"])
    gate("curated", curated.ref, catalog, GATES)
    teacher, s = built.teacher, built.settings
    for ref in tokenize("news", catalog, teacher, s["tokens"], progress=False).refs:
        gate("tokens", ref, catalog)
    for ref in cache_logits("news", catalog, teacher, s["logits"], progress=False).refs:
        gate("logits", ref, catalog)
    data = {k: s[k] for k in ("teacher", "ingest", "dedup", "tokens", "logits")}
    assert data_unchanged(catalog, "news", [str(built.source)], **data) is not None
    # The data is complete, but the promoted student has not learned tokens/news@2.
    assert _ask_refresh(built, [built.source], catalog.home) is None
    rcfg = RefreshConfig(steps=2, warmup_steps=0)
    trained = refresh_student("news", catalog, teacher, s["distill"], rcfg, GATES, progress=False)
    assert trained.model is not None
    out = _ask_refresh(built, [built.source], catalog.home)
    assert out is not None  # promoted: nothing newer than its data; kept: this run is done
    again = refresh_student("news", catalog, teacher, s["distill"], rcfg, GATES, progress=False)
    assert out["refresh"] == again.to_dict()
    assert out["refresh"]["promoted"] == trained.promoted
