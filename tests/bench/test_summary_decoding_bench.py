"""bench/summary_decoding.py on a tiny home: decoding chosen on selection articles, reported on
test articles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.summary_decoding import choose, main, parse_args
from data_quality import GatesConfig
from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig
from tasks.distill.distill import distill
from tests.helpers import tokenized_pairs
from tests.tiny import make_tiny_llama
from warehouse import Catalog


def test_ties_go_to_the_smaller_n() -> None:
    scores = {n: {"student": {"rouge_l": r}} for n, r in ((0, 0.2), (3, 0.3), (4, 0.3))}
    assert choose(scores) == 3
    assert choose({4: {"student": {"rouge_l": 0.1}}, 0: {"student": {"rouge_l": 0.1}}}) == 0


def test_bad_arguments_are_refused_up_front(catalog: Catalog, capsys) -> None:
    from tasks.distill.distill import held_out_pairs

    with pytest.raises(SystemExit):
        parse_args(["--home", "h", "--ngrams", "0", "-3"])
    assert "-3 is not >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'selection' or 'test'"):
        held_out_pairs(catalog, [], 3, "train")  # type: ignore[arg-type]


def test_decoding_is_chosen_on_selection_articles_and_reported_on_test_ones(
    catalog: Catalog, tmp_path: Path
) -> None:
    spec = ModelSpec(path=str(make_tiny_llama(tmp_path / "teacher")))
    tokenized_pairs(catalog, tmp_path, spec, n=60)
    dcfg = DistillConfig(mode="online", max_steps=2, batch_blocks=2, eval_every=2,
                         checkpoint_every=2, eval_speed_tokens=4, rouge_pairs=0)  # fmt: skip
    gates = GatesConfig.model_validate({"student": {"max_ppl_ratio": 100.0}})
    assert distill("pairs", catalog, spec, dcfg, gates, progress=False).model["promoted"]
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"teacher: {{path: {spec.path}}}\n"
        "tokens: {block_size: 64, validation_share: 0.3}\n"  # the snapshots' (32) is used
        "distill: {mode: online, rouge_max_new_tokens: 8}\n"
    )
    out_json = tmp_path / "out.json"
    args = ["--home", str(catalog.home), "--dataset", "pairs", "--config", str(config)]
    out = main([*args, "--articles", "3", "--ngrams", "0", "2", "--json", str(out_json)])

    assert out["student"] == "models/pairs-student@1"
    assert out["block_size"] == 32  # the snapshots', not the config's 64
    assert sorted(out["selection"]) == [0, 2]  # every candidate is tried on selection articles
    assert out["chosen"] == choose(out["selection"])
    assert sorted(out["test"]) == sorted({0, out["chosen"]})  # plain greedy and the choice
    for split in ("selection", "test"):
        for r in out[split].values():
            assert r["articles"] == 3
            assert 0.0 <= r["student"]["rouge_l"] <= 1.0 and 0.0 <= r["teacher"]["rouge_l"] <= 1.0
    chosen_on = {e["article"] for e in out["selection"][0]["examples"]}
    reported = {e["article"] for e in out["test"][0]["examples"]}
    assert chosen_on and reported and not chosen_on & reported  # different articles
    assert json.loads(out_json.read_text())["chosen"] == out["chosen"]
