"""Where the warehouse lives: `LLM4ALL_HOME`, else the config's `home`, else `./.llm4all`."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".llm4all"


def resolve_home(configured: str | os.PathLike[str] | None = None) -> Path:
    env = os.environ.get("LLM4ALL_HOME")
    home = env or configured or DEFAULT_HOME
    return Path(home).expanduser().resolve()
