from __future__ import annotations

from pathlib import Path

import pytest

from warehouse import Catalog, CatalogError
from warehouse.registry import get_model, list_models, register_model, set_model_gate


def _saved(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_text(marker)
    return path


def _register(catalog: Catalog, folder: Path) -> object:
    return register_model(
        catalog, "s", folder, teacher="t", tokens=["tokens/x@1"], logits=["logits/x@2"],
        config_hash="abc", metrics={"ppl_ratio": 1.2},
    )  # fmt: skip


def test_versions_lineage_and_promotion(catalog: Catalog, tmp_path: Path) -> None:
    assert list_models(catalog) == []  # no catalog yet
    _register(catalog, _saved(tmp_path / "a", "A"))
    _register(catalog, _saved(tmp_path / "b", "B"))
    assert [m.version for m in list_models(catalog, "s")] == [1, 2]
    assert not (tmp_path / "a").exists()  # moved into the registry
    m1 = get_model(catalog, "s", 1)
    assert (Path(m1.path) / "model.safetensors").read_text() == "A"
    assert m1.tokens == ["tokens/x@1"] and m1.logits == ["logits/x@2"] and m1.teacher == "t"
    assert m1.gate_passed is None and not m1.promoted and m1.key == "models/s@1"
    set_model_gate(catalog, "s", 1, True, None)
    set_model_gate(catalog, "s", 2, False, {"why": "ppl"})
    assert [m.promoted for m in list_models(catalog)] == [True, False]
    set_model_gate(catalog, "s", 2, True, None)
    assert [m.promoted for m in list_models(catalog)] == [False, True]


def test_a_folder_that_is_not_a_model_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match=r"config\.json"):
        _register(catalog, tmp_path / "empty")
    with pytest.raises(CatalogError, match="no model"):
        get_model(catalog, "s")


def test_a_failed_insert_leaves_the_folder_where_it_was(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warehouse.registry as reg

    folder = _saved(tmp_path / "a", "A")
    monkeypatch.setattr(reg, "_COLUMNS", reg._COLUMNS + ", no_such_column")
    with pytest.raises(Exception, match="no_such_column"):
        _register(catalog, folder)
    assert (folder / "model.safetensors").read_text() == "A"
    monkeypatch.undo()
    assert list_models(catalog) == []


def test_a_child_of_a_stale_parent_is_not_promoted(catalog: Catalog, tmp_path: Path) -> None:
    """A refresh continues v1; meanwhile a retrain registered v2 and promoted it. The refresh's
    v3 passes its gate but must not replace v2."""
    _register(catalog, _saved(tmp_path / "a", "A"))
    set_model_gate(catalog, "s", 1, True, None)
    _register(catalog, _saved(tmp_path / "b", "B"))
    set_model_gate(catalog, "s", 2, True, None)  # the fresh retrain
    child = register_model(
        catalog, "s", _saved(tmp_path / "c", "C"), teacher="t", tokens=[], logits=[],
        config_hash="abc", metrics={}, parent="models/s@1", gate_passed=True,
        requires_promoted="models/s@1",
    )  # fmt: skip
    assert child.gate_passed and not child.promoted
    assert [m.promoted for m in list_models(catalog)] == [False, True, False]
    fresh = register_model(
        catalog, "s", _saved(tmp_path / "d", "D"), teacher="t", tokens=[], logits=[],
        config_hash="abc", metrics={}, parent="models/s@2", gate_passed=True,
        requires_promoted="models/s@2",
    )  # fmt: skip
    assert fresh.promoted and fresh.version == 4
    set_model_gate(catalog, "s", 1, True, None)  # an older version passing later: no change
    assert [m.promoted for m in list_models(catalog)] == [False, False, False, True]


def test_a_model_folder_renamed_but_never_committed_is_moved_aside(
    catalog: Catalog, tmp_path: Path
) -> None:
    _register(catalog, _saved(tmp_path / "a", "A"))
    orphan = catalog.home / "models" / "s" / "v=2"  # a crash between rename and commit
    _saved(orphan, "half")
    info = _register(catalog, _saved(tmp_path / "b", "B"))
    assert info.version == 2 and (Path(info.path) / "model.safetensors").read_text() == "B"
    (trashed,) = (catalog.home / "trash").iterdir()
    assert (trashed / "model.safetensors").read_text() == "half"


def test_settings_are_recorded_and_replaced(catalog: Catalog) -> None:
    assert catalog.settings("news") is None
    with catalog.writing():
        catalog.record_settings("news", "a.yaml", {"tokens": {"block_size": 16}}, {"x.y": 1})
    s = catalog.settings("news")
    assert s is not None and s["config"] == {"tokens": {"block_size": 16}}
    assert s["overrides"] == {"x.y": 1} and s["config_path"] == "a.yaml"
    with catalog.writing():
        catalog.record_settings("news", None, {}, {})
    assert catalog.settings("news")["config"] == {}  # type: ignore[index]
