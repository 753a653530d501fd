"""Flow commands with nothing to do: how long a scheduled no-op costs, as the user runs it.

    python -m bench.idle [--repeat 5]

Builds a tiny dataset with `llm4all pipeline` (tiny teacher from a config, inline news rows;
the command also starts the home's local Prefect server) and a dynamic-int8 variant of its
student with `llm4all quantize`, then times, each as a whole process (`bench.common.
run_process`: start-up, imports and exit included), the commands a schedule repeats when no
new data has come:

  curate          every raw version is already curated
  cache-logits    every gated snapshot is already cached
  distill         the registry already holds the student of this data and config
  quantize        ... and its dynamic-int8 variant (the settings of the dataset it was trained on)
  pipeline        the same input file again: unchanged, every stage has nothing to do
  refresh         the same file: no new data, nothing newer than the promoted student's data

first with the home's Prefect server up (as under `llm4all ui` or after any flow command),
then with it stopped. Prints one line per command and state (median and max wall seconds over
`--repeat` runs, CPU seconds, exit code) and writes bench/results/idle_cpu.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import run_process

ROOT = Path(__file__).resolve().parents[1]
DATASET = "idle"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--results", default="idle_cpu", help="name under bench/results/ ('' = none)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.stress import _config
    from flows.cli.prefect_env import running_server, stop_process
    from tests.helpers import news_docs, write_jsonl

    home = Path(tempfile.mkdtemp(prefix="llm4all-idle-")).resolve()
    env = {**os.environ, "LLM4ALL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    files = home / "inputs"
    files.mkdir()
    cfg = _config(files)
    data = write_jsonl(files / "rows.jsonl", news_docs(40))

    def llm4all(*a: str) -> dict:
        return run_process([sys.executable, "-m", "flows.cli", *a], cwd=ROOT, env=env)

    quantize = ["quantize", "--model", f"{DATASET}-student", "--method", "dynamic-int8", "--json"]
    build = llm4all("pipeline", "-d", DATASET, str(data), "-c", str(cfg), "--json")
    for step in (build, llm4all(*quantize)):
        if step["rc"] != 0:
            print(step["stderr"][-3000:])
            return 1
    commands = {
        "curate": ["curate", "-d", DATASET, "--json"],
        "cache-logits": ["cache-logits", "-d", DATASET, "-c", str(cfg), "--json"],
        "distill": ["distill", "-d", DATASET, "--json"],
        "quantize": quantize,
        "pipeline (same file)": ["pipeline", "-d", DATASET, str(data), "-c", str(cfg), "--json"],
        "refresh (same file)": ["refresh", "-d", DATASET, str(data), "-c", str(cfg), "--json"],
    }
    lines = [
        f"# python -m bench.idle --repeat {args.repeat}  (load before: {os.getloadavg()[0]:.2f},"
        f" {os.cpu_count()} cores)",
        f"# tiny dataset built by `llm4all pipeline` in {build['wall_s']:.1f} s wall",
        f"{'command':<22} {'server':<8} {'median s':>9} {'max s':>7} {'cpu s':>7} {'rc':>3}",
    ]
    for server_up in (True, False):
        if not server_up:
            info = running_server(home)
            if info:
                stop_process(int(info["pid"]))
        for name, cmd in commands.items():
            runs = [llm4all(*cmd) for _ in range(args.repeat)]
            walls = [r["wall_s"] for r in runs]
            cpu = statistics.median(r["cpu_s"] for r in runs)
            rc = max(r["rc"] for r in runs)
            state = "up" if server_up else "stopped"
            lines.append(
                f"{name:<22} {state:<8} {statistics.median(walls):>9.2f} {max(walls):>7.2f}"
                f" {cpu:>7.2f} {rc:>3}"
            )
            print(lines[-1], flush=True)
    info = running_server(home)
    if info:
        stop_process(int(info["pid"]))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        (ROOT / "bench" / "results" / f"{args.results}.txt").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
