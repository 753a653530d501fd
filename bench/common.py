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


def run_process(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one whole command as a process and time it from outside: wall seconds
    (`perf_counter` around spawn ... reap, so start-up, imports, reading and writing are in),
    CPU seconds (user + sys) and peak RSS of the process from `wait4`'s rusage, and the
    1-minute load average before and after (wall time means little on a busy machine)."""
    import os
    import threading
    import time

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}

    def drain(name: str, f: Any) -> None:  # wait4 reaps the process itself: drain meanwhile
        out[name] = f.read()

    threads = [
        threading.Thread(target=drain, args=(k, f))
        for k, f in (("out", p.stdout), ("err", p.stderr))
    ]
    for th in threads:
        th.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    for th in threads:
        th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": p.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "stdout": out.get("out", b"").decode(errors="replace"),
        "stderr": out.get("err", b"").decode(errors="replace"),
    }


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


def random_teacher(
    p: dict[str, Any], seed: int = 0, device: str = "cpu", tie_word_embeddings: bool = False
) -> Any:
    """A random Llama of profile `p`'s shape (vocab, hidden, ffn, layers, heads, kv_heads,
    block_size) with its output layer scaled by p["sharpen"]: a random LM is near uniform, this
    gives it preferences, so text sampled from it has something to learn."""
    import torch
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config

    torch.manual_seed(seed)
    cfg = llama_config(
        p["vocab"], hidden=p["hidden"], ffn=p["ffn"], layers=p["layers"], heads=p["heads"],
        kv_heads=p["kv_heads"], positions=p["block_size"], bos_token_id=0, eos_token_id=1,
        pad_token_id=1, tie_word_embeddings=tie_word_embeddings,
    )  # fmt: skip
    teacher = LlamaForCausalLM(cfg).to(device).eval()
    with torch.no_grad():
        teacher.lm_head.weight.mul_(p["sharpen"])
    return teacher


def sample_blocks(teacher: Any, n: int, p: dict[str, Any], device: str = "cpu") -> Any:
    """`n` blocks of p["block_size"] tokens sampled from `teacher` (top_k 0: its full
    distribution), each from a random first token; a (n, block_size) int64 numpy array."""
    import torch

    start = torch.randint(2, p["vocab"], (n, 1), device=device)
    with torch.no_grad():
        ids = teacher.generate(
            input_ids=start, do_sample=True, max_new_tokens=p["block_size"] - 1,
            min_new_tokens=p["block_size"] - 1, pad_token_id=1, top_k=0,
        )  # fmt: skip
    return ids.cpu().numpy()
