"""Run a GGUF file through llama.cpp (the llama-cpp-python binding), when it is installed:
held-out negative log-likelihood on token blocks, prompt (forward) and greedy generation
tokens/s, wall and per CPU second.

llama-cpp-python ships no wheel for Linux on PyPI: it builds llama.cpp from source (~15 min of
CPU; `make llama-cpp` installs it, the `llamacpp` extra of pyproject.toml). It is
optional: `available()` says why it cannot be used, and everything that needs it asks first.

Timing note: llama.cpp's worker threads spin while they wait at the barrier between
operations. On an idle machine that is what makes it fast; on an oversubscribed one each
barrier waits for a descheduled thread and the spinning burns CPU time, so its tokens/s there
understate it (wall) and so does tokens per CPU second. Compare speeds on idle cores only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


def available() -> str | None:
    """None when llama-cpp-python can be imported here; otherwise the one-line reason."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as e:  # not installed, or its shared library does not load
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"llama-cpp-python is not usable here ({line}): `make llama-cpp` builds it"
    return None


def version() -> str | None:
    try:
        import llama_cpp

        return str(llama_cpp.__version__)
    except Exception:
        return None


@contextmanager
def open_gguf(path: str, n_ctx: int = 512, threads: int | None = None) -> Iterator[Any]:
    """A llama_cpp.Llama on `path` (logits of every position kept), closed on exit.
    threads: default torch's thread count, so both sides of a comparison get the same."""
    from llama_cpp import Llama

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    llm = Llama(
        model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
        n_threads_batch=threads, logits_all=True, verbose=False,
    )  # fmt: skip
    try:
        yield llm
    finally:
        llm.close()  # before interpreter exit: its __del__ then finds its modules gone


def nll(llm: Any, ids: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Next-token NLL of blocks ids [B, L] (each block from an empty context), weighted by
    mask[:, 1:] as tasks/distill/evaluate.py weighs it, and the prompt-processing speed."""
    total = count = wall = cpu = 0.0
    for b, row in enumerate(np.asarray(ids)):
        llm.reset()
        t, c = time.perf_counter(), time.process_time()
        llm.eval([int(x) for x in row])
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        logits = np.asarray(llm.scores[: len(row) - 1], dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        lse = np.log(np.exp(logits).sum(-1))
        tgt = row[1:]
        ce = lse - logits[np.arange(len(tgt)), tgt]
        w = np.ones_like(ce) if mask is None else np.asarray(mask[b, 1:], np.float64)
        total += float((ce * w).sum())
        count += float(w.sum())
    n = np.asarray(ids).size
    return {
        "nll": total,
        "tokens": count,
        "ppl": math.exp(total / max(count, 1.0)),
        "fwd_tokens_per_s": n / wall,
        "fwd_tokens_per_cpu_s": n / cpu,
    }


def generate(llm: Any, prompt: Sequence[int], n: int) -> dict[str, Any]:
    """Greedy generation of n tokens after `prompt` (prompt processing included, as
    tasks/distill/evaluate.generation_speed times PyTorch), after one short warm-up run."""

    def run(k: int) -> list[int]:
        llm.reset()
        out: list[int] = []
        for tok in llm.generate(list(prompt), top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                                repeat_penalty=1.0, reset=True):  # fmt: skip
            out.append(int(tok))
            if len(out) >= k:
                break
        return out

    run(2)
    t, c = time.perf_counter(), time.process_time()
    out = run(n)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"ids": out, "gen_tokens_per_s": len(out) / wall, "gen_tokens_per_cpu_s": len(out) / cpu}
