"""Stress: three pipeline and three refresh triggers of one dataset at once, on the tiny profile,
served by `llm4all serve`. Every run must complete, in the order triggered, one at a time, and
nothing ingested may be lost or counted twice.

    python -m bench.stress [--home DIR] [--keep]

It builds the dataset with `llm4all pipeline` (which records its settings and starts the
home's local Prefect server), serves it with `llm4all serve` (recorded settings), triggers
pipeline, refresh, pipeline, refresh, pipeline, refresh through the Prefect API as fast as it
can, each with a file of new rows, follows them to the end and checks:

- every run Completed;
- each started after the previous one ended, in trigger order (queued, not cancelled);
- the raw rows are the union of every file, each content once; the model registry's refresh
  children continue the version that was promoted when they ran.

Prints one line per run and a verdict; exits 1 if a check fails. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
DATASET = "stress"


def _config(folder: Path) -> Path:
    from tests.tiny import tiny_pipeline_config

    return tiny_pipeline_config(
        folder,
        distill={"max_steps": 4, "lr": 3e-3},
        refresh={"steps": 4, "max_old_regression": 10.0},
    )


def _llm4all(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM4ALL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env, capture_output=True,
        text=True,
    )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None, help="warehouse home (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="leave the home's Prefect server running")
    args = ap.parse_args()
    home = (args.home or Path(tempfile.mkdtemp(prefix="llm4all-stress-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["LLM4ALL_HOME"] = str(home)
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    sys.path.insert(0, str(ROOT))
    from tests.helpers import news_docs, write_jsonl

    files = home / "inputs"
    files.mkdir(exist_ok=True)
    cfg = _config(files)
    base = write_jsonl(files / "base.jsonl", news_docs(40))
    started = time.monotonic()
    first = _llm4all(home, "pipeline", "-d", DATASET, str(base), "-c", str(cfg), "--json")
    if first.returncode != 0:
        print(first.stderr[-3000:])
        return 1
    print(f"built {DATASET} in {time.monotonic() - started:.0f} s (home {home})")

    from flows.cli.prefect_env import connect, prefect_env, running_server, stop_process

    prefect_env(home)
    connect(home)  # the server the pipeline command started
    with open(home / "serve.log", "w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve", "-d", DATASET], cwd=ROOT,
            env={**os.environ}, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            return _stress(home, files)
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=120)
            server = running_server(home)
            if server and not args.keep:
                stop_process(int(server["pid"]))


def _stress(home: Path, files: Path) -> int:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.deployments import follow, trigger
    from tests.helpers import news_docs, write_jsonl
    from warehouse import Catalog
    from warehouse.registry import list_models

    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.read_deployment_by_name(f"refresh/{DATASET}").last_polled:
                    break
            except ObjectNotFound:
                pass
            if time.monotonic() > deadline:
                print("serve never came up; see", home / "serve.log")
                return 1
            time.sleep(1)

    plan = [(flow, i) for i in range(3) for flow in ("pipeline", "refresh")]
    runs = []
    t0 = time.monotonic()
    for flow, i in plan:  # as fast as the API takes them
        src = write_jsonl(files / f"{flow}-{i}.jsonl", news_docs(30, prefix=f"{flow}{i}x"))
        runs.append((flow, trigger(flow, DATASET, {"sources": [str(src)]})))
    print(f"triggered {len(runs)} runs in {time.monotonic() - t0:.1f} s")
    finals = [follow(UUID(str(r.id)), echo=lambda _: None) for _, r in runs]
    with get_client(sync_client=True) as client:
        done = [client.read_flow_run(r.id) for _, r in runs]

    ok = True
    prev_end = None
    for (flow, _), run, state in zip(runs, done, finals, strict=True):
        line = (
            f"{flow:<8} {run.name:<24} {state.name:<10} start {run.start_time:%H:%M:%S} "
            f"end {run.end_time:%H:%M:%S}"
            if run.start_time and run.end_time
            else state.name
        )
        print(line)
        if not state.is_completed():
            ok = False
            print("   ", (state.message or "").splitlines()[:1])
        if prev_end and run.start_time and run.start_time < prev_end:
            ok = False
            print("    started before the previous run ended: not queued in order")
        prev_end = run.end_time or prev_end

    catalog = Catalog(home)
    raw = catalog.versions("raw", DATASET)
    rows = sum(v.ref.rows for v in raw if v.gate_passed)
    expected = 40 + 30 * len(plan)
    ids = [r["id"] for v in raw for r in v.ref.read(columns=["id"]).to_pylist()]
    print(f"raw rows {rows} (expected {expected}), distinct ids {len(set(ids))}")
    ok &= rows == expected and len(set(ids)) == len(ids) == expected
    models = list_models(catalog, f"{DATASET}-student")
    for m in models:
        decision = (m.metrics.get("refresh") or {}).get("reason", "")
        print(f"  {m.key} parent {m.parent} promoted {m.promoted} {decision[:60]}")
    print(json.dumps({"ok": ok, "runs": len(runs), "seconds": round(time.monotonic() - t0, 1)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
