"""flows/runtime.py: which settings a run records for its dataset."""

from __future__ import annotations

from pathlib import Path

from flows.config import resolve_settings
from flows.runtime import remember_settings, settings_to_record
from warehouse import Catalog


def test_a_run_records_settings_only_when_told_other_ones(tmp_path: Path, home: Path) -> None:
    catalog = Catalog(home)
    first, _ = resolve_settings("news", None, {"distill.max_steps": 12})
    assert settings_to_record(catalog, "news", first, replace=False)  # none recorded yet
    remember_settings(catalog, "news", first, replace=True)
    recorded = catalog.settings("news")
    assert recorded is not None and recorded["overrides"] == {"distill.max_steps": 12}
    same, _ = resolve_settings("news", None, {"distill.max_steps": 12})  # recorded + same --set
    assert same.told and not settings_to_record(catalog, "news", same, replace=True)
    plain, _ = resolve_settings("news", None, None)  # the recorded ones, not told anything
    assert not settings_to_record(catalog, "news", plain, replace=True)
    other, _ = resolve_settings("news", None, {"distill.max_steps": 13})
    assert settings_to_record(catalog, "news", other, replace=True)
    assert not settings_to_record(catalog, "news", other, replace=False)  # only runs that replace
    path = tmp_path / "c.yaml"
    path.write_text("distill:\n  max_steps: 12\n")
    given, _ = resolve_settings("news", path, None)  # --config: other settings than recorded
    assert settings_to_record(catalog, "news", given, replace=True)
    remember_settings(catalog, "news", given, replace=True)
    again, _ = resolve_settings("news", path, None)
    assert not settings_to_record(catalog, "news", again, replace=True)
    assert catalog.settings("news")["config"] == {"distill": {"max_steps": 12}}
