"""`llm4all distill`, `quantize`, `export` and `refresh` with nothing to do answer from the
catalog, without a flow run (or a Prefect server), with what the flow returns for a run already
done; anything else (another run key, new data, settings to record, an error to report) goes to
the flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.app import Invocation
from flows.config import resolve_settings
from flows.runtime import remember_settings
from tasks.distill.distill import distill
from tasks.quantize.quantize import quantize_model
from tasks.refresh.refresh import refresh_student
from tests.tasks import test_pending
from tests.tasks.test_pending import GATES, Built, _copy
from warehouse import Catalog

runner = CliRunner()
built = test_pending.built  # its module-scoped fixture: the dataset, built again here


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The flow runs a command starts (target, parameters), none really started: a command
    that answers from the catalog starts none."""
    started: list[tuple[str, dict[str, Any]]] = []

    def run_flow(self: Invocation, target: str, **params: Any) -> dict[str, Any]:
        started.append((target, params))
        return {"flow": target}

    monkeypatch.setattr(Invocation, "run_flow", run_flow)
    return started


def _home(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Catalog, str]:
    """A copy of the built home as LLM4ALL_HOME, and a config file with its settings."""
    catalog = _copy(built, tmp_path)
    monkeypatch.setenv("LLM4ALL_HOME", str(catalog.home))
    sections = {k: v.model_dump(mode="json") for k, v in built.settings.items()}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps(sections))  # YAML
    return catalog, str(cfg)


def _json(*args: str) -> dict[str, Any]:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_distill_with_nothing_to_do(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list
) -> None:
    catalog, cfg = _home(built, tmp_path, monkeypatch)
    assert _json("distill", "-d", "news", "-c", cfg) == {
        "ok": True,
        "flow": "flows.distill:distill_flow",
    }
    assert len(started) == 1  # no settings recorded yet: the run records them
    remember_settings(catalog, "news", resolve_settings("news", cfg, {})[0], False)
    out = _json("distill", "-d", "news")  # the recorded settings
    done = distill("news", catalog, built.teacher, built.settings["distill"], GATES)
    assert out == json.loads(json.dumps({"ok": True, **done.to_dict()}, default=str))
    assert out["skipped"] and out["model"]["key"] == "models/news-student@1"
    assert _json("distill", "-d", "news", "-c", cfg) == out  # told the same settings
    assert len(started) == 1
    human = runner.invoke(app, ["distill", "-d", "news"])
    assert human.exit_code == 0 and len(started) == 1
    assert (
        human.stdout
        == "models/news-student@1 already holds this run (gate passed): nothing to do\n"
    )
    _json("distill", "-d", "news", "--steps", "3")  # another run key: the flow trains
    _json("distill", "-d", "other", "-c", cfg)  # no data: the flow says so
    assert [target for target, _ in started[1:]] == ["flows.distill:distill_flow"] * 2


def test_quantize_and_export_with_nothing_to_do(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list
) -> None:
    catalog, cfg = _home(built, tmp_path, monkeypatch)
    remember_settings(catalog, "news", resolve_settings("news", cfg, {})[0], False)
    args = ["quantize", "--model", "news-student", "--method", "dynamic-int8"]
    assert _json(*args)["flow"] == "flows.quantize:quantize_flow"  # not made yet
    q = built.settings["quantize"]
    made = quantize_model("news-student", catalog, built.teacher, q, GATES, method="dynamic-int8")
    done = quantize_model("news-student", catalog, built.teacher, q, GATES, method="dynamic-int8")
    assert not made.skipped and done.skipped
    want = json.loads(json.dumps({"ok": True, **done.to_dict()}, default=str))
    # Without --dataset: the settings of the dataset the model was trained on, as the flow.
    assert _json(*args) == want and _json(*args, "-d", "news") == want
    assert _json(*args, "-c", cfg) == want
    assert len(started) == 1
    human = runner.invoke(app, args)
    assert human.exit_code == 0 and len(started) == 1
    assert "news-student-dynamic-int8@1 already holds this run (gate passed)" in human.stdout
    for other in (
        ["--set", "quantize.eval_blocks=2"],  # another run key
        ["--method", "int8"],  # not made
        ["--set", "quantize.name=mine"],  # another name
    ):
        _json(*args, *other)
    _json("quantize", "--model", "teacher", "--method", "dynamic-int8")  # no dataset: the flow says
    # export: the same body (the flow tests make a GGUF and ask again); none is registered here
    assert _json("export", "--model", "news-student", "--type", "q8_0")["path"] is None
    assert [t for t, _ in started[1:]] == ["flows.quantize:quantize_flow"] * 5
    assert started[-1][1]["method"] == "gguf-q8_0"


def test_refresh_with_nothing_to_do(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list
) -> None:
    catalog, cfg = _home(built, tmp_path, monkeypatch)
    source = str(built.source)
    assert _json("refresh", "-d", "news", source, "-c", cfg)["flow"] == "flows.refresh:refresh_flow"
    assert len(started) == 1  # no settings recorded yet: the run records them
    remember_settings(catalog, "news", resolve_settings("news", cfg, {})[0], False)
    out = _json("refresh", "-d", "news", source)  # the recorded settings
    s = built.settings
    nothing = refresh_student("news", catalog, built.teacher, s["distill"], gates=GATES)
    assert out["refresh"] == json.loads(json.dumps(nothing.to_dict()))
    assert out["refresh"]["promoted"] == "models/news-student@1" and out["refresh"]["model"] is None
    assert out["ingest"][0]["unchanged_since"] == "raw/news@1" and out["quantize"] == []
    assert set(out) == {"ok", "dataset", "ingest", "curate", "tokens", "logits", "gates",
                        "refresh", "quantize"}  # fmt: skip
    assert _json("refresh", "-d", "news", source, "-c", cfg) == out  # told the same settings
    assert _json("refresh", "-d", "news") == out | {"ingest": []}  # refresh.sources: none
    assert len(started) == 1
    human = runner.invoke(app, ["refresh", "-d", "news", source])
    assert human.exit_code == 0 and len(started) == 1
    assert "refresh  no tokens snapshot of 'news' newer than models/news-student@1's data\n" in (
        human.stdout
    )
    assert human.stdout.endswith(
        "promoted: models/news-student@1\nnothing to do: no flow run, no refresh report published\n"
    )
    changed = tmp_path / "news.jsonl"
    changed.write_bytes(built.source.read_bytes() + b'{"id": "late", "text": "team market 99"}\n')
    _json("refresh", "-d", "news", str(changed))  # new data: the flow ingests it
    _json("refresh", "-d", "news", source, "--set", "refresh.steps=3")  # settings to record
    methods = resolve_settings("news", cfg, {"quantize.methods": ["dynamic-int8"]})[0]
    remember_settings(catalog, "news", methods, True)
    _json("refresh", "-d", "news", source)  # a variant of the promoted student not made yet
    assert [t for t, _ in started[1:]] == ["flows.refresh:refresh_flow"] * 3
