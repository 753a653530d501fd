"""Arrow arrays from numpy without pandas.

pyarrow imports pandas (~0.7 s) the first time `pa.array` or `pa.scalar` meets a Python or numpy
object; arrays built from buffers do not. Fast commands (`llm4all score`) build their arrays
here.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    if valid is None:
        return None
    return pa.py_buffer(np.packbits(np.ascontiguousarray(valid, bool), bitorder="little"))


def numeric(x: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Int/float array over a numpy array's buffer (no copy); `valid` False -> null."""
    x = np.ascontiguousarray(x)
    buffers = [_validity(valid), pa.py_buffer(x)]
    return pa.Array.from_buffers(pa.from_numpy_dtype(x.dtype), x.size, buffers)


def boolean(mask: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Boolean array of a numpy bool array; `valid` False -> null."""
    m = np.ascontiguousarray(mask, bool)
    buffers = [_validity(valid), pa.py_buffer(np.packbits(m, bitorder="little"))]
    return pa.Array.from_buffers(pa.bool_(), m.size, buffers)


def strings(values: list[str]) -> pa.Array:
    """String array of Python strings (small lists: the encoding runs in Python)."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])
