"""bench/kd_vs_ce.py on a tiny home: the three recipes per seed, from one cut, scored on test
blocks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.kd_vs_ce import main
from models.loading_config import ModelSpec
from tests.helpers import distill_inputs
from tests.tiny import make_tiny_llama
from warehouse import Catalog


def _config(tmp_path: Path, teacher: Path) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(
        f"teacher: {{path: {teacher}}}\n"
        "distill: {max_steps: 4, batch_blocks: 2, eval_every: 2, checkpoint_every: 2, lr: 3.0e-3}\n"
    )
    return path


def test_each_seed_trains_kd_kd_response_only_and_the_ce_only_reference(
    catalog: Catalog, tmp_path: Path
) -> None:
    teacher = make_tiny_llama(tmp_path / "teacher")
    distill_inputs(catalog, tmp_path, ModelSpec(path=str(teacher)))
    out_json = tmp_path / "out.json"
    args = ["--home", str(catalog.home), "--dataset", "news", "--seeds", "2"]
    out = main([*args, "--config", str(_config(tmp_path, teacher)), "--json", str(out_json)])

    recipes = ["KD", "KD response-only", "CE only"]
    assert [(r["recipe"], r["seed"]) for r in out["runs"]] == [
        (n, s) for s in (0, 1) for n in recipes
    ]
    by = {(r["recipe"], r["seed"]): r for r in out["runs"]}
    assert by["KD", 0]["weights"]["kd_weight"] == 1.0
    assert by["KD", 0]["weights"]["hidden_weight"] == 1.0  # 1 of 2 layers kept: terms on
    assert by["KD response-only", 0]["weights"]["hidden_weight"] == 0.0
    assert by["CE only", 0]["weights"] == {
        "kd_weight": 0.0, "ce_weight": 1.0, "hidden_weight": 0.0, "relation_weight": 0.0,
        "summary_share": 0.0,
    }  # fmt: skip
    for r in out["runs"]:
        assert math.isfinite(r["test_ppl"]) and r["test_ppl"] > 1.0
        assert r["selection_ppl"] > 1.0 and r["selection_ppl"] != r["test_ppl"]  # other blocks
        assert r["steps"] == 4 and r["kept_step"] in (2, 4)  # kept on the selection blocks
    # The recipes learn differently, and a seed changes the batches.
    assert by["KD", 0]["test_ppl"] != by["CE only", 0]["test_ppl"]
    assert by["KD", 0]["test_ppl"] != by["KD response-only", 0]["test_ppl"]
    assert by["KD", 0]["test_ppl"] != by["KD", 1]["test_ppl"]
    kd = [by["KD", s]["test_ppl"] for s in (0, 1)]
    assert out["summary"]["KD"]["ppl"]["mean"] == pytest.approx(sum(kd) / 2)
    assert out["summary"]["KD"]["ppl"]["sd"] == pytest.approx(abs(kd[0] - kd[1]) / math.sqrt(2))
    diffs = [by["KD", s]["test_ppl"] - by["CE only", s]["test_ppl"] for s in (0, 1)]
    assert out["kd_minus"]["CE only"]["mean"] == pytest.approx(sum(diffs) / 2)  # paired by seed
    assert json.loads(out_json.read_text())["runs"] == json.loads(json.dumps(out["runs"]))


def test_a_home_without_a_catalog_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no catalog here"):
        main(["--home", str(tmp_path / "nowhere")])


def test_recipes_and_set_pick_what_runs_and_the_student_cut(
    catalog: Catalog, tmp_path: Path
) -> None:
    teacher = make_tiny_llama(tmp_path / "teacher")
    distill_inputs(catalog, tmp_path, ModelSpec(path=str(teacher)))
    width = [
        "distill.student.kind=width",
        "distill.student.kv_heads=1",
        "distill.student.share=0.9",
    ]
    args = ["--home", str(catalog.home), "--dataset", "news", "--seeds", "1", "--steps", "2"]
    args += ["--config", str(_config(tmp_path, teacher)), "--recipes", "CE only"]
    out = main([*args, *(x for kv in width for x in ("--set", kv))])

    assert [r["recipe"] for r in out["runs"]] == ["KD", "CE only"]  # KD always, first
    assert out["student"]["kind"] == "width" and out["student"]["kv_heads"] == 1
    assert out["layers"] == [0, 1]  # width keeps every layer ...
    kd = out["runs"][0]
    assert kd["weights"]["hidden_weight"] == 0.0  # ... so the feature terms stay off
    assert kd["steps"] == 2 and set(out["kd_minus"]) == {"CE only"}
