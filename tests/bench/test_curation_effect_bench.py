"""`python -m bench.curation_effect --corpus C --heldout H --json` (the hidden-corpus check's
command) on a tiny teacher and inline pairs: one JSON object of the stated shape."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import WORDS, make_tiny_llama

ROOT = Path(__file__).resolve().parents[2]


def sentence(rng: random.Random) -> str:
    """Eight words: the tiny tokenizer's and made-up ones (prose enough for the quality rules)."""
    made = "".join(rng.choice("bcdfgklmnprst") + rng.choice("aeiou") for _ in range(3))
    words = [rng.choice(WORDS) for _ in range(7)] + [made]
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def pairs(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(sentence(rng) for _ in range(10))
        num = 10 + i
        out.append({"id": f"p{seed}-{i}", "text": f"the police said {num} people came. {body}",
                    "summary": f"the police said {num} people came to the city."})  # fmt: skip
    return out


def write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_hidden_corpus_command_prints_one_object(tmp_path: Path) -> None:
    teacher = make_tiny_llama(tmp_path / "teacher", hidden_size=64)
    corpus = pairs(24, 0)
    for r in corpus:
        r["noise"] = []
    corpus += [dict(r, id=r["id"] + "-copy", noise=["duplicate"]) for r in corpus[:3]]
    c = write(corpus, tmp_path / "corpus.jsonl")
    h = write(pairs(12, 1), tmp_path / "heldout.jsonl")
    src = write([{"document": r["text"], "right_summary": r["summary"]} for r in pairs(30, 2)],
                tmp_path / "source.jsonl")  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.curation_effect", "--profile", "ci", "--seeds", "2",
         "--teacher", str(teacher), "--source", str(src), "--corpus", str(c), "--heldout", str(h),
         "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    out = json.loads(lines[0])
    assert out["seeds"] == 2
    keys = ("ppl_mean", "ppl_sd", "pref_mean", "pref_sd", "rouge_l_mean", "teacher_tokens",
            "student_tokens")  # fmt: skip
    for arm in ("raw", "curated"):
        assert all(k in out[arm] for k in keys), out[arm]
        assert math.isfinite(out[arm]["ppl_mean"]) and out[arm]["ppl_mean"] > 1
        assert 0 <= out[arm]["pref_mean"] <= 1
    # the exact copies are curated away: fewer rows, fewer tokens of both kinds
    assert out["curated"]["rows"] < out["raw"]["rows"] == 27
    assert out["curated"]["teacher_tokens"] < out["raw"]["teacher_tokens"]
    assert out["curated"]["student_tokens"] < out["raw"]["student_tokens"]
    assert out["verdict"]["cost_ratio"] < 1
    near = [f for f in out["curation"]["filters"]["filters"] if f["filter"] in ("exact", "near")]
    assert near and all(f["target"] == "duplicate" for f in near)
    assert out["curation"]["filters"]["by_kind"]["duplicate"]["removed"] == 3
    # the corpus labels its noise: the oracle student trains on the 24 clean rows (ci: 1 seed)
    oracle = out["oracle"]
    assert oracle["rows"] == 24 and oracle["teacher_tokens"] < out["raw"]["teacher_tokens"]
    assert set(out["oracle_verdict"]) == set(out["verdict"])


def test_json_output_is_strict() -> None:
    from bench.curation_effect import strict

    out = strict({"a": [1.0, float("nan")], "b": {"c": math.inf}, "d": "x"})
    assert out == {"a": [1.0, None], "b": {"c": None}, "d": "x"}
