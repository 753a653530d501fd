"""Small builders for test inputs."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, records: list[dict | bytes | str]) -> Path:
    """Write records as JSON lines; bytes/str items are written verbatim (for broken lines)."""
    with open(path, "wb") as f:
        for r in records:
            if isinstance(r, bytes):
                f.write(r + b"\n")
            elif isinstance(r, str):
                f.write(r.encode() + b"\n")
            else:
                f.write(json.dumps(r).encode() + b"\n")
    return path


def good_records(n: int, prefix: str = "doc") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": f"{prefix} number {i}: a perfectly ordinary sentence."}
        for i in range(n)
    ]
