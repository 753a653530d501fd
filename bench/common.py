"""Helpers shared by the benchmarks: run a measured step in a fresh process, report a table."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"


def measure(code: str, timeout: int = 1800) -> dict[str, Any]:
    """Run `code` in a fresh Python process; it must set `result` (a dict).

    Returns that dict plus `seconds` (wall time of the code, not of the interpreter start) and
    `peak_rss_mb` (the process's high-water mark), so every step starts from the same state.
    """
    wrapper = "\n".join(
        [
            "import json, resource, sys, time",
            "result = {}",
            "_t0 = time.perf_counter()",
            textwrap.dedent(code).strip("\n"),
            'result["seconds"] = time.perf_counter() - _t0',
            'result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024',
            'print("@@RESULT@@" + json.dumps(result))',
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line.removeprefix("@@RESULT@@"))
    raise RuntimeError(f"benchmark step failed:\n{proc.stderr[-3000:]}")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in columns))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def save(name: str, payload: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
