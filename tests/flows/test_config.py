from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import Config, ConfigError, load_config, parse_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_and_shipped_profiles_validate() -> None:
    assert load_config() == Config()
    for path in CONFIGS.glob("*.yaml"):
        load_config(path)  # every shipped profile must load


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingest:\n  max_charz: 10\n", r"unknown key 'ingest\.max_charz'"),
        ("ingset: {}\n", "unknown key 'ingset'"),
        ("gates:\n  raw:\n    max_quarantined_share: 2\n", r"gates\.raw\.max_quarantined_share"),
        ("ingest: [unclosed\n", "not valid YAML"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_keys_values_and_files_say_what_is_wrong(
    tmp_path: Path, text: str, message: str
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_a_missing_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_set_single_fields() -> None:
    cfg = load_config(None, parse_overrides(["ingest.max_chars=123", "ingest.text_field=body"]))
    assert (cfg.ingest.max_chars, cfg.ingest.text_field) == (123, "body")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["ingest.max_chars"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, parse_overrides(["ingest.nope=1"]))


def test_the_readme_config_example_validates(tmp_path: Path) -> None:
    """The YAML block under "## Configuration" in README.md is a config that loads."""
    import re

    readme = (CONFIGS.parent / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme[readme.index("## Configuration") :], re.S)
    assert block is not None
    (tmp_path / "readme.yaml").write_text(block.group(1))
    cfg = load_config(tmp_path / "readme.yaml")
    assert cfg.distill.max_steps == 200 and cfg.refresh.replay_share == 0.5


def test_a_dataset_reuses_its_recorded_settings_unless_told_otherwise(
    tmp_path: Path, home: Path
) -> None:
    from flows.config import resolve_settings
    from warehouse import Catalog

    catalog = Catalog(home)
    with catalog.writing():
        catalog.record_settings(
            "news", "tiny.yaml", {"tokens": {"block_size": 128}}, {"distill.max_steps": 12}
        )
    recorded, where = resolve_settings("news", None, None)
    cfg = recorded.load()
    assert where == home and recorded.origin == "recorded" and not recorded.told
    assert cfg.tokens.block_size == 128 and cfg.distill.max_steps == 12
    layered, _ = resolve_settings("news", None, {"distill.max_steps": 3})
    assert layered.told and layered.load().tokens.block_size == 128  # --set on top
    assert layered.load().distill.max_steps == 3
    path = tmp_path / "other.yaml"
    path.write_text("tokens:\n  block_size: 64\n")
    given, _ = resolve_settings("news", path, None)  # --config replaces them
    assert given.origin == "given" and given.load().tokens.block_size == 64
    assert given.load().distill.max_steps == 200
    fresh, _ = resolve_settings("other", None, None)  # nothing recorded: the defaults
    assert fresh.origin == "defaults" and fresh.load().tokens.block_size == 256
