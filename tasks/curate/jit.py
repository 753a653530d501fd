"""Which kernels run: compiled by numba (`tasks.curate.kernels`), or the same source
interpreted by Python for tiny inputs, where numba's start-up (~1.1 s of CPU: the import, then
loading the cached machine code) would be most of the command's time. Both give identical
results (tested); interpreted, they take ~45 µs of CPU per byte of text (numba: ~0.03).

`kernels()` returns the module to call; `interpreted()` switches this process to the
interpreted module for the length of a block (`llm4all score` on an input under
`TINY_BYTES`).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

TINY_BYTES = 8 << 10  # inputs up to this size run interpreted (~0.4 s at most)
_INTERPRETED_NAME = "tasks.curate._kernels_interpreted"
_interpreted_depth = 0


def _interpreted_module() -> ModuleType:
    mod = sys.modules.get(_INTERPRETED_NAME)
    if mod is None:
        path = Path(__file__).with_name("kernels.py")
        spec = importlib.util.spec_from_file_location(_INTERPRETED_NAME, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        mod.__dict__["_INTERPRETED"] = True
        spec.loader.exec_module(mod)
        sys.modules[_INTERPRETED_NAME] = mod
    return mod


def kernels() -> ModuleType:
    """The kernels module in force: numba-compiled unless inside `interpreted()`."""
    if _interpreted_depth:
        return _interpreted_module()
    from tasks.curate import kernels as compiled

    return compiled


@contextmanager
def interpreted(on: bool = True) -> Iterator[None]:
    """Run the kernels interpreted inside this block (when `on`); numpy's integer-overflow
    warnings are silenced there (the hashes wrap modulo 2^64 by design)."""
    global _interpreted_depth
    if not on:
        yield
        return
    import numpy as np

    _interpreted_depth += 1
    try:
        with np.errstate(over="ignore"):
            yield
    finally:
        _interpreted_depth -= 1


def is_tiny(source: str) -> bool:
    """A plain file small enough to score interpreted."""
    try:
        p = Path(source)
        return p.is_file() and p.stat().st_size <= TINY_BYTES
    except OSError:
        return False
