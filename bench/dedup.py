"""Near-duplicate benchmark, apples to apples: `llm4all score --filters exact,near` against
datasketch's MinHashLSH, each a whole process from JSONL in to Parquet out, on the same files,
in the same run, at the same threshold.

    python -m bench.dedup                      # 20k real + 200k + 1M (the figures in README)
    python -m bench.dedup --sizes 20000 --threshold 0.9
    python -m bench.dedup --quick              # seconds: the CI profile

Corpora (built on first use, cached under bench/out/dedup/; `bench.dedup_corpus`): 20k = real
documents (CNN/DailyMail, Chinese news, encyclopedic passages, licence texts found on the
machine) with injected near-copies at known Jaccard; 200k = perturbed passages with injected
families; 1M = the 200k set replicated through word bijections (exact truth by construction).
Truth (`bench.dedup_truth`): every pair with word-5-gram Jaccard >= 0.5, exactly.

Tools, each its own process, timed the same way (`bench.common.run_process`: wall, CPU seconds
and peak RSS from wait4):
  llm4all            `python -m flows.cli score FILE -o OUT --filters exact,near
                     --set dedup.near.threshold=T` (exact verification, the default)
  llm4all_estimate   the same with `--set dedup.near.verify=estimate` (20k only)
  datasketch         datasketch MinHash(128) + MinHashLSH(threshold=T), query-then-insert, every
                     candidate taken as an edge (datasketch's own use)
  datasketch_exact   the same candidates, each verified by the exact Jaccard of the two shingle
                     sets (Python sets) before it becomes an edge
All use the same shingles (word 5-grams of the same NFC-lowercased words) and the same exact
dedup rule first; clusters are connected components; an exact duplicate joins its original.

Quality, against the truth: true pairs = pairs inside the connected components of the J >= T
graph; predicted pairs = pairs inside a tool's near_dup_cluster groups; precision, recall, F1
(pair counting) and the share of predicted pairs whose true J >= 0.5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import run_process

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NUM_PERM, NGRAM = 128, 5
DATASKETCH_MAX_DOCS = 200_000  # above: ours only (datasketch would take most of an hour)


# =========================================================================== datasketch
def datasketch_worker(src: str, out: str, threshold: float, verify: bool) -> dict[str, Any]:
    """datasketch end to end in this process (timed from outside), same rules as ours."""
    import hashlib
    import re
    import unicodedata

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    from tasks.curate.lsh import clusters
    from tasks.curate.minhash import words_of

    schema = pa.schema([("text", pa.string()), ("id", pa.string())])
    reader = pj.open_json(
        src,
        read_options=pj.ReadOptions(block_size=4 << 20),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    ws = re.compile(r"[ \t\n\f\r]+")
    ids: list[str] = []
    first_of: dict[bytes, int] = {}
    first: list[int] = []
    empty: list[bool] = []
    sets: list[set[str]] = []
    ea: list[int] = []
    eb: list[int] = []
    n = 0
    for batch in reader:
        texts = batch.column(0)
        ids += [
            x if x is not None else str(n + i) for i, x in enumerate(batch.column(1).to_pylist())
        ]
        for t, wl in zip(texts.to_pylist(), words_of(texts).to_pylist(), strict=True):
            d = n
            n += 1
            key_text = ws.sub(" ", unicodedata.normalize("NFC", t or "").lower()).strip(" \t\n\f\r")
            empty.append(not key_text)
            key = hashlib.blake2b(key_text.encode(), digest_size=16).digest()
            f = first_of.setdefault(key, d) if key_text else d
            first.append(f)
            words = [w for w in (wl or []) if w]
            if len(words) >= NGRAM:
                sh = {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}
            else:
                sh = {" ".join(words)} if words else set()
            if verify:
                sets.append(sh)
            if not key_text or f != d or not sh:
                continue
            m = MinHash(num_perm=NUM_PERM, seed=1)
            m.update_batch([s.encode("utf-8") for s in sh])
            for other in lsh.query(m):
                if verify:
                    o = sets[other]
                    inter = len(sh & o)
                    if inter / (len(sh) + len(o) - inter) < threshold:
                        continue
                ea.append(other)
                eb.append(d)
            lsh.insert(d, m, check_duplication=False)
    first_a, empty_a = np.array(first, np.int64), np.array(empty, bool)
    idx = np.arange(n, dtype=np.int64)
    exact_dup = (first_a != idx) & ~empty_a
    a, b = np.array(ea, np.int64), np.array(eb, np.int64)
    cluster = clusters(n, np.minimum(a, b), np.maximum(a, b))
    near_dup = (cluster != idx) & ~exact_dup & ~empty_a
    cluster = np.where(exact_dup, cluster[first_a], cluster)
    reason = np.full(n, None, object)
    reason[near_dup], reason[exact_dup], reason[empty_a] = "near_dup", "exact_dup", "empty_text"
    id_arr = pa.array(ids, pa.string())
    exact_of = pc.if_else(
        pa.array(exact_dup), pc.take(id_arr, pa.array(first_a)), pa.scalar(None, pa.string())
    )
    table = pa.table(
        {
            "id": id_arr,
            "keep": pa.array(reason == None),  # noqa: E711
            "reason": pa.array(reason, pa.string()),
            "exact_dup_of": exact_of,
            "near_dup_cluster": pa.array(cluster),
        }
    )
    pq.write_table(table, out, compression="zstd")
    return {"rows": n, "edges": int(a.size), "bands": lsh.b, "band_rows": lsh.r}


# =========================================================================== corpora
def ensure_corpus(kind: str, docs: int, root: Path) -> Path:
    """The folder of a corpus (corpus.jsonl, truth.npz, corpus.json), built in a subprocess
    on first use (this process stays small: a child's peak RSS includes its parent's)."""
    folder = root / f"{kind}-{docs}"
    if (folder / "corpus.json").exists():
        return folder
    if kind == "scale" and docs > DATASKETCH_MAX_DOCS and docs % DATASKETCH_MAX_DOCS == 0:
        base = ensure_corpus("scale", DATASKETCH_MAX_DOCS, root)
        cmd = ["replicate", str(base), "--copies", str(docs // DATASKETCH_MAX_DOCS)]
    else:
        cmd = [kind, "--docs", str(docs)]
    print(f"building corpus {folder.name} (once; cached) ...", flush=True)
    r = run_process([PY, "-m", "bench.dedup_corpus", *cmd, "--out", str(folder)], cwd=ROOT)
    if r["rc"]:
        sys.exit(f"corpus {folder.name} failed:\n{r['stderr'][-3000:]}")
    return folder


# =========================================================================== tools
def tool_command(tool: str, src: Path, out: Path, threshold: float) -> list[str]:
    if tool.startswith("llm4all"):
        cmd = [PY, "-m", "flows.cli", "score", str(src), "-o", str(out), "--json"]
        cmd += ["--filters", "exact,near", "--set", f"dedup.near.threshold={threshold}"]
        return cmd + (["--set", "dedup.near.verify=estimate"] if tool.endswith("estimate") else [])
    return [PY, "-m", "bench.dedup", "--worker", tool, "--src", str(src), "--out", str(out),
            "--threshold", str(threshold)]  # fmt: skip


def evaluate(cluster: Any, truth: Path, threshold: float) -> dict[str, Any]:
    """Pair precision / recall / F1 against the components of the J >= threshold graph (pair
    counting: no pair list is built), and the share of predicted pairs with J >= 0.5."""
    import numpy as np

    from tasks.curate.lsh import clusters

    z = np.load(truth)
    n, a, b, j = int(z["n"]), z["a"], z["b"], z["j"]
    true = clusters(n, a[j >= threshold - 1e-12], b[j >= threshold - 1e-12])
    pred = np.unique(np.asarray(cluster, np.int64), return_inverse=True)[1].astype(np.int64)

    def pairs(counts: Any) -> int:
        return int((counts * (counts - 1) // 2).sum())

    true_pairs = pairs(np.bincount(true))
    pred_pairs = pairs(np.bincount(pred))
    tp = pairs(np.unique(true * n + pred, return_counts=True)[1])
    p = tp / pred_pairs if pred_pairs else 1.0
    r = tp / true_pairs if true_pairs else 1.0
    close = int((pred[a] == pred[b]).sum())  # predicted pairs among the J >= 0.5 pairs
    return {
        "true_pairs": true_pairs,
        "pred_pairs": pred_pairs,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
        "pred_share_j_ge_0.5": round(close / pred_pairs, 4) if pred_pairs else 1.0,
    }


def warm_up_ours(folder: Path) -> None:
    """One untimed run on a small file: numba's cache is filled (the first run after an
    install compiles the kernels, ~10-15 s), the OS has the program files cached."""
    src = folder / "warm-up.jsonl"
    with src.open("w") as f:
        for i in range(300):
            f.write(json.dumps({"text": f"warm up document {i} " + "with a few words " * 8}) + "\n")
    r = run_process(tool_command("llm4all", src, folder / "warm-up.parquet", 0.8), cwd=ROOT)
    if r["rc"]:
        sys.exit(f"llm4all score failed:\n{r['stderr'][-3000:]}")


def startup(root: Path, runs: int = 5) -> dict[str, Any]:
    """Whole-process time of `score --filters exact,near` on a 2-row file (the fixed cost a
    user pays on every call): the best of `runs` (wall, and the CPU of that run)."""
    src = root / "startup.jsonl"
    src.write_text('{"id": "a", "text": "a tiny file"}\n{"id": "b", "text": "of two rows"}\n')
    cmd = [PY, "-m", "flows.cli", "score", str(src), "-o", str(root / "startup.parquet")]
    best = min(
        (run_process([*cmd, "--filters", "exact,near"], cwd=ROOT) for _ in range(runs)),
        key=lambda r: r["wall_s"],
    )
    return {k: best[k] for k in ("rc", "wall_s", "cpu_s", "peak_rss_mb", "load_before")}


def bench_corpus(folder: Path, tools: list[str], threshold: float, repeat: int) -> list[dict]:
    """Run every tool on one corpus, then evaluate (after the runs: see `ensure_corpus`)."""
    import pyarrow.parquet as pq

    src = folder / "corpus.jsonl"
    with src.open("rb") as f:  # page cache: the first tool does not pay the disk for all
        while f.read(1 << 24):
            pass
    rows = []
    for tool in tools:
        for rep in range(repeat if tool.startswith("llm4all") else 1):
            out = folder / f"out-{tool}.parquet"
            res = run_process(tool_command(tool, src, out, threshold), cwd=ROOT)
            res.update(tool=tool, repeat=rep, output=str(out))
            print(
                f"  {tool:17} rc {res['rc']}  wall {res['wall_s']:8.1f} s  cpu {res['cpu_s']:8.1f}"
                f" s  peak {res['peak_rss_mb']:7.0f} MB  (load {res['load_before']:.1f})",
                flush=True,
            )
            if res["rc"]:
                print(res["stderr"][-2000:], file=sys.stderr)
            with contextlib.suppress(ValueError, IndexError):
                res["report"] = json.loads(res["stdout"].strip().splitlines()[-1])
            del res["stdout"]
            if not res["rc"]:
                del res["stderr"]
            rows.append(res)
    for res in rows:
        if not res["rc"]:
            cl = pq.read_table(res["output"], columns=["near_dup_cluster"]).column(0).to_numpy()
            res.update(evaluate(cl, folder / "truth.npz", threshold))
    return rows


# =========================================================================== report
def _table(folder: Path, rows: list[dict], info: dict) -> list[str]:
    lines = [
        f"corpus {folder.name}: {info['docs']:,} docs, {info['bytes'] / 1e6:.1f} MB JSONL"
        + (
            f", {info['licence_texts_on_this_machine']} licence texts"
            if "licence_texts_on_this_machine" in info
            else ""
        ),
        f"  {'tool':17}{'wall s':>9}{'cpu s':>9}{'peak MB':>9}{'docs/s':>10}"
        f"{'P':>8}{'R':>8}{'F1':>8}{'J>=.5':>8}{'load':>12}",
    ]
    for r in rows:
        q = [r.get(k, float("nan")) for k in ("precision", "recall", "f1", "pred_share_j_ge_0.5")]
        lines.append(
            f"  {r['tool']:17}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['peak_rss_mb']:>9.0f}"
            f"{info['docs'] / r['wall_s']:>10,.0f}{q[0]:>8.3f}{q[1]:>8.3f}{q[2]:>8.3f}{q[3]:>8.3f}"
            f"{r['load_before']:>6.1f}/{r['load_after']:<5.1f}"
        )
    ours = [r for r in rows if r["tool"] == "llm4all" and not r["rc"]]
    if ours:
        best = min(ours, key=lambda r: r["wall_s"])
        for other in ("datasketch", "datasketch_exact"):
            o = next((r for r in rows if r["tool"] == other and not r["rc"]), None)
            if o:
                lines.append(
                    f"  {other} / llm4all: wall x{o['wall_s'] / best['wall_s']:.1f}, "
                    f"CPU x{o['cpu_s'] / best['cpu_s']:.1f}"
                )
        phases = best.get("report", {}).get("stats", {}).get("seconds")
        if phases:
            lines.append(f"  llm4all phases (s, in-process): {json.dumps(phases)}")
    return lines


def run(
    sizes: list[int], threshold: float = 0.8, root: Path | None = None, repeat: int = 1
) -> dict[str, Any]:
    """Build (or reuse) the corpora, run every tool on each, evaluate, print the tables."""
    from bench.common import OUT

    root = root or OUT / "dedup"
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    head = [
        f"bench.dedup: threshold {threshold}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, load {os.getloadavg()[0]:.1f} at start",
        f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}",
    ]
    print("\n".join(head), flush=True)
    warm_up_ours(root)
    st = startup(root)
    head.append(
        f"start-up, `score --filters exact,near` on a 2-row file (best of 5): wall "
        f"{st['wall_s']:.2f} s, CPU {st['cpu_s']:.2f} s, peak {st['peak_rss_mb']:.0f} MB "
        f"(load {st['load_before']:.1f})"
    )
    print(head[-1], flush=True)
    report: dict[str, Any] = {"threshold": threshold, "startup": st, "corpora": []}
    lines = list(head)
    for docs in sizes:
        kind = "real" if docs <= 20_000 else "scale"
        folder = ensure_corpus(kind, docs, root)
        info = json.loads((folder / "corpus.json").read_text())
        tools = ["llm4all"]
        if kind == "real":
            tools.append("llm4all_estimate")
        if docs <= DATASKETCH_MAX_DOCS:
            tools += ["datasketch", "datasketch_exact"]
        print(f"corpus {folder.name}: {', '.join(tools)}", flush=True)
        rows = bench_corpus(folder, tools, threshold, repeat)
        check = None
        if kind == "real":  # the truth against Python string shingles, on a sample of pairs
            r = run_process(
                [PY, "-m", "bench.dedup_truth", str(folder / "corpus.jsonl"), "--check"], cwd=ROOT
            )
            check = json.loads(r["stdout"].strip().splitlines()[-1]) if not r["rc"] else None
        table = _table(folder, rows, info)
        if check:
            table.append(
                f"  truth spot check: {check['checked_pairs']} pairs, max |J_engine - J_strings|"
                f" = {check['max_abs_diff']:.2e}"
            )
        print("\n".join(table), flush=True)
        lines += ["", *table]
        report["corpora"].append(
            {"corpus": folder.name, "info": info, "runs": rows, "truth_check": check}
        )
    report["seconds"] = round(time.time() - started, 1)
    report["text"] = "\n".join(lines)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,200000,1000000")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--repeat", type=int, default=1, help="runs of llm4all per corpus")
    ap.add_argument("--quick", action="store_true", help="tiny corpora (seconds): the CI profile")
    ap.add_argument("--results", default="dedup_cpu", help="name under bench/results/ ('' = none)")
    ap.add_argument("--worker", choices=["datasketch", "datasketch_exact"], help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        res = datasketch_worker(
            args.src, args.out, args.threshold, args.worker == "datasketch_exact"
        )
        print(json.dumps(res))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [400] if args.quick else [int(s) for s in args.sizes.split(",") if s]  # "": start-up
    report = run(sizes, args.threshold, repeat=args.repeat)
    if args.results and not args.quick:
        results = ROOT / "bench" / "results"
        (results / f"{args.results}.json").write_text(json.dumps(report, indent=1, default=str))
        (results / f"{args.results}.txt").write_text(report["text"] + "\n")
        print(f"\nwrote bench/results/{args.results}.json and .txt ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
