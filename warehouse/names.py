"""Validation of the names that end up in paths and catalog rows."""

from __future__ import annotations

import re

# Letters, digits, '_', '-', '.'; starts with a letter or digit; no '..'. Names become path
# components (lake/<stage>/<name>/v=<n>), so anything else is refused rather than escaped.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

STAGES = ("raw", "curated", "tokens", "logits")


class InvalidName(ValueError):
    """A dataset or stage name that could escape the lake or break a query."""


def validate_name(name: str, what: str = "dataset name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidName(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (no '/', '..' or quotes)"
        )
    return name


def validate_stage(stage: str) -> str:
    if stage not in STAGES:
        raise InvalidName(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return stage


def artifact_key(text: str) -> str:
    """A Prefect artifact key from any text: lowercase letters, digits and '-', at most 100."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())[:100]
