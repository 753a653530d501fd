"""How often the looping check flags text that does not loop: human and ChatGPT summaries.

    python -m bench.looping [--n 2000] [--report REPORT.md]

The demo report calls a generated summary that fails Gopher's n-gram repetition rules
(tasks.curate.quality.repetition_reason) a looping failure. Its false-alarm rate: the share of
the first N HaluEval (CNN/DailyMail) human highlights, and of the ChatGPT summaries HaluEval
wrote for the same articles (hallucinated on purpose, but fluent), that it flags. Prints both
rates and the first few flagged texts with the rule that fired.
With --report, also checks the generated summaries a demo report (or a results file holding
one) shows: its `- teacher:` and `- KD student:` lines.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from flows.demo import demo_corpus
from tasks.curate.quality import repetition_reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args()
    fields = {
        "human highlights": "right_summary",
        "ChatGPT (hallucinated) summaries": "hallucinated_summary",
    }
    flagged: dict[str, list[tuple[str, str]]] = {name: [] for name in fields}
    n = 0
    with open(demo_corpus()) as f:
        for line in itertools.islice(f, args.n):
            row, n = json.loads(line), n + 1
            for name, field in fields.items():
                if why := repetition_reason(row[field]):
                    flagged[name].append((why, row[field]))
    print(f"{n} rows of {demo_corpus().name}")
    for name, hits in flagged.items():
        print(f"{name}: {len(hits)} of {n} flagged ({len(hits) / max(n, 1):.2%})")
        for why, text in hits[:3]:
            print(f"  {why}: {' '.join(text.split())[:160]}")
    if args.report:
        print(f"summaries shown in {args.report}:")
        for line in args.report.read_text().splitlines():
            for label in ("- teacher: ", "- KD student: "):
                if line.startswith(label):
                    text = line[len(label) :]
                    print(f"  {label[2:-2]}: {repetition_reason(text) or 'does not loop'}")


if __name__ == "__main__":
    main()
