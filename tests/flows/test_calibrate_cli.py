"""`llm4all calibrate`: the threshold for a target false-positive rate on human text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import NEWS_WORDS, write_jsonl


def _texts(n: int) -> list[dict]:
    rng = random.Random(0)
    return [{"text": " ".join(rng.choice(NEWS_WORDS) for _ in range(20))} for _ in range(n)]


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_calibrate_prints_the_threshold_and_writes_it(tmp_path: Path) -> None:
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "lm")
    ref = write_jsonl(tmp_path / "human.jsonl", [*_texts(40), {"text": "the news"}])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"teacher": {"path": str(teacher)}, "home": "h"}))
    res = _invoke("calibrate", str(ref), "--target-fpr", "0.05", "-c", str(cfg), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["texts"] == 41 and out["scored"] == 40 and out["too_short"] == 1
    assert out["scorer"] == "binoculars" and out["human_above"] == 2  # 5% of 40
    lo, hi = out["fpr_interval_90"]  # where the true rate lies, with 40 texts: wide
    assert lo < 0.05 < hi and hi - lo > 0.1
    assert out["prefix"] == "auto"  # the default: the threshold holds for it
    assert out["written"] is None and f"threshold: {out['threshold']!r}" in out["yaml"]

    res = _invoke("calibrate", str(ref), "--target-fpr", "0.05", "-c", str(cfg))
    assert res.exit_code == 0 and "threshold:" in res.stdout and "--write" in res.stdout
    assert "binoculars (prefix 'auto')" in res.stdout and "90% sure between" in res.stdout

    res = _invoke(
        "calibrate", str(ref), "--target-fpr", "0.05", "-c", str(cfg), "--write", str(cfg)
    )
    assert res.exit_code == 0, res.output
    written = yaml.safe_load(cfg.read_text())
    assert written["dedup"]["mgt"]["threshold"] == out["threshold"]
    assert written["teacher"]["path"] == str(teacher)  # the rest of the file kept


def test_calibrate_errors_are_one_line(tmp_path: Path) -> None:
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "lm")
    ref = write_jsonl(tmp_path / "human.jsonl", _texts(40))
    sets = ["--set", f"teacher.path={teacher}"]
    res = _invoke("calibrate", str(ref), *sets, "--json")  # 1% needs 100 texts
    assert res.exit_code == 1
    assert "needs at least 100 scored human texts; got 40" in res.stderr
    assert json.loads(res.stdout)["ok"] is False and "Traceback" not in res.output
    res = _invoke("calibrate", str(ref), "--target-fpr", "1.5", *sets)
    assert res.exit_code == 2 and "--target-fpr must be in (0, 1)" in res.stderr
