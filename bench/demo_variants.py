"""The demo's quantized variants of a trained student, as the pipeline registers them.

    python -m bench.demo_variants --home HOME [--model cnn_dailymail-student] [--copy]

Runs, each as a whole process (`bench.common.run_process`), `llm4all quantize --model MODEL
--method M -c configs/demo.yaml --json` for every method of the demo config's
`quantize.methods` (what the demo's pipeline does after distillation), then `llm4all status
--json`, and prints what status shows for each variant: bytes on disk against the fp32
parent's, Δppl on the held-out test blocks (transformers; llama.cpp beside it when
installed), generation speed against fp32 PyTorch, the gate. HOME is a `make demo` home
(`LLM4ALL_HOME`); with `--copy` the bench works on a copy of it, leaving HOME as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import print_table, run_process
from flows.config import bundled_config, load_config

ROOT = Path(__file__).resolve().parents[1]


def llm4all(args: list[str], home: Path) -> dict:
    env = {**os.environ, "LLM4ALL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "flows.cli", *args, "--json"]
    return run_process(cmd, cwd=ROOT, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="a `make demo` home (LLM4ALL_HOME)")
    ap.add_argument("--model", default="cnn_dailymail-student")
    ap.add_argument("--copy", action="store_true", help="work on a copy of HOME")
    args = ap.parse_args()
    if not (Path(args.home) / "catalog.duckdb").is_file():
        ap.error(f"{args.home} is not an llm4all home (no catalog.duckdb): run `make demo` first")
    config = bundled_config("demo.yaml")
    methods = load_config(config).quantize.methods
    home = Path(args.home)
    if args.copy:
        home = Path(tempfile.mkdtemp(prefix="llm4all-variants-")) / "home"
        shutil.copytree(args.home, home)
    try:
        return measure(home, args.model, config, methods, args.home)
    finally:
        if args.copy:  # the copy's Prefect server (the first flow command started it) goes too
            from flows.cli.prefect_env import running_server, stop_process

            info = running_server(home)
            if info:
                stop_process(int(info["pid"]))
            shutil.rmtree(home.parent, ignore_errors=True)


def measure(home: Path, model: str, config: Path, methods: list[str], shown: str) -> int:
    """Each method as one `quantize` process, then what `status --json` shows; exit status."""
    print(f"# {model} in {shown}; methods {', '.join(methods)} (configs/demo.yaml)")
    processes = {}
    for method in methods:
        r = llm4all(["quantize", "-m", model, "--method", method, "-c", str(config)], home)
        processes[method] = r
        print(f"  quantize {method}: exit {r['rc']}, {r['wall_s']:.0f} s wall, "
              f"{r['cpu_s']:.0f} s CPU, load {r['load_before']:.1f} -> {r['load_after']:.1f}",
              flush=True)  # fmt: skip
        if r["rc"] not in (0, 3):  # 3: registered, gate failed
            print(r["stderr"][-2000:], file=sys.stderr)
    status = json.loads(llm4all(["status"], home)["stdout"])
    rows = []
    for m in status["models"]:
        x = m.get("metrics") or {}
        parent = (m.get("parent") or "").split("/")[-1].split("@")[0]
        if parent != model or x.get("method") not in methods:
            continue
        rows.append({
            "variant": f"{m['name']}@{m['version']}", "disk MB": x["disk_bytes"] / 1e6,
            "x fp32": f"{x['disk_bytes_ratio']:.3f}", "Δppl %": x["ppl_delta_pct"],
            "llama.cpp Δppl %": x.get("llama_cpp_ppl_delta_pct"),
            "generate x": x.get("gen_speedup"), "runtime": x.get("runtime", "").split(" (")[0],
            "gate": {True: "passed", False: "failed"}.get(m["gate_passed"], "pending"),
            "promoted": "yes" if m["promoted"] else "no",
        })  # fmt: skip
    print(f"\n`llm4all status --json`: the variants of {model}")
    print_table(rows, list(rows[0]) if rows else ["variant"])
    return 0 if all(r["rc"] in (0, 3) for r in processes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
