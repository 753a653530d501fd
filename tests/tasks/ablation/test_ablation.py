"""The curation ablation's bookkeeping: the noisy corpus records its noise, the statistics, the
filter report and the verdict are the stated arithmetic."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tasks.ablation.config import NoiseConfig
from tasks.ablation.corpus import NOISE_KINDS, build_corpus, corrupt, jaccard, text_key
from tasks.ablation.curation import factuality_threshold, filter_report
from tasks.ablation.effect import (
    mean_sd,
    oracle_plan,
    past_deadline,
    projected_seconds,
    training_pools,
    verdict,
)

NAMES = ["Paris", "London", "Madrid", "Oslo", "Berlin", "Vienna", "Rome", "Lisbon"]
WORDS = [
    "the",
    "city",
    "said",
    "police",
    "court",
    "state",
    "year",
    "people",
    "market",
    "week",
    "team",
    "season",
    "world",
]


def source(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Inline pairs: word salad articles naming one city and one number, summaries restating
    them (so rule corruptions always apply)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        city, num = NAMES[i % len(NAMES)], 10 + i
        body = " ".join(rng.choice(WORDS) for _ in range(120))
        text = f"report {i}: the police in {city} said {num} people came. {body}"
        rows.append({"text": text, "summary": f"police in {city} said {num} people came.",
                     "hallucinated": None})  # fmt: skip
    return rows


def machine(articles: list[str]) -> list[str]:
    """A stand-in writer (the teacher's role): a new article keeping the first words."""
    return [" ".join(a.split()[:6]) + " " + " ".join(["market"] * 100) for a in articles]


def test_corpus_records_each_injected_noise_at_the_stated_rates() -> None:
    cfg = NoiseConfig(rows=50, heldout=10, calibration=20, min_chars=0, seed=3)
    built = build_corpus(source(100), cfg, machine)
    rows = built.rows
    assert len(rows) == 50 and len({r["id"] for r in rows}) == 50
    counts = built.counts()
    assert counts["duplicate"] == round(50 * 0.2)
    # machine and unfaithful rows are drawn among the originals; a copy inherits its kinds
    originals = [r for r in rows if "duplicate" not in r["noise"]]
    assert len(originals) == 40
    assert sum("machine" in r["noise"] for r in originals) == round(50 * 0.15)
    assert sum("unfaithful" in r["noise"] for r in originals) == round(50 * 0.3)
    for r in rows:
        assert set(r["noise"]) <= set(NOISE_KINDS)
        if "machine" in r["noise"]:
            assert r["text"].endswith("market market")
        if "unfaithful" in r["noise"]:
            assert r["detail"]["unfaithful"].startswith("rules: ")
    # per group: the first row in corpus order is the kept original, the rest are duplicates
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["detail"]["group"], []).append(r)
    for members in groups.values():
        assert "duplicate" not in members[0]["noise"]
        assert all("duplicate" in m["noise"] for m in members[1:])
        for m in members[1:]:
            assert jaccard(m["text"], members[0]["text"]) < 1.0
            assert m["summary"] == members[0]["summary"]
    # held-out and calibration articles are clean and never corpus articles
    corpus_keys = {text_key(r["text"]) for r in rows}
    held = {text_key(r["text"]) for r in built.heldout}
    calib = {text_key(r["text"]) for r in built.calibration}
    assert len(built.heldout) == 10 and len(built.calibration) == 20
    assert not (held & corpus_keys) and not (calib & corpus_keys) and not (held & calib)


def test_near_copies_land_in_the_jaccard_range() -> None:
    cfg = NoiseConfig(rows=30, heldout=4, calibration=20, min_chars=0, machine_share=0.0,
                      min_jaccard=0.5, max_jaccard=0.7, seed=1)  # fmt: skip
    built = build_corpus(source(60), cfg, None)
    copies = [r for r in built.rows if "jaccard" in r["detail"]]
    assert len(copies) == 6
    assert all(r["detail"]["jaccard"] <= 0.7 for r in copies)
    assert all(r["detail"]["jaccard"] > 0.3 for r in copies)  # substituted, not rewritten


def test_machine_rows_need_a_writer() -> None:
    with pytest.raises(ValueError, match="teacher"):
        build_corpus(source(80), NoiseConfig(rows=20, heldout=4, calibration=20, min_chars=0),
                     None)  # fmt: skip


def test_corruption_states_what_the_article_does_not() -> None:
    rng = random.Random(0)
    doc = "the police in Paris said 40 people came to the court."
    for _ in range(20):
        made = corrupt("Police in Paris said 40 people came.", doc, ["London", "Oslo"], rng)
        assert made is not None
        new, kinds = made
        assert new != "Police in Paris said 40 people came."
        assert kinds and set(kinds) <= {"entity", "number", "negation"}
    assert corrupt("", doc, [], rng) is None


def test_mean_and_sample_sd() -> None:
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([5.0]) == (5.0, 0.0)
    assert mean_sd([1.0, float("nan"), 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert all(math.isnan(x) for x in mean_sd([]))


def test_filter_report_scores_each_filter_against_its_noise() -> None:
    rows = [
        {"noise": []}, {"noise": []}, {"noise": ["duplicate"]}, {"noise": ["duplicate"]},
        {"noise": ["unfaithful"]}, {"noise": ["machine"]},
    ]  # fmt: skip
    keep = {"keep": True, "reason": None}
    decisions = [
        keep, {"keep": False, "reason": "near_dup:0"}, {"keep": False, "reason": "near_dup:0"},
        keep, {"keep": False, "reason": "unfaithful"}, keep,
    ]  # fmt: skip
    rep = filter_report(rows, decisions)
    near = next(f for f in rep["filters"] if f["filter"] == "near")
    assert near["dropped"] == 2 and near["precision"] == 0.5 and near["recall"] == 0.5
    fact = next(f for f in rep["filters"] if f["filter"] == "unfaithful")
    assert fact["precision"] == 1.0 and fact["recall"] == 1.0
    assert rep["by_kind"]["machine"]["recall"] == 0.0
    assert rep["by_kind"]["clean"] == {"rows": 2, "removed": 1, "recall": 0.5}
    assert rep["precision"] == pytest.approx(2 / 3) and rep["recall"] == 0.5
    assert filter_report([{"text": "x"}], [keep]) == {}  # unlabelled corpus: nothing to score


def test_pools_the_oracle_trains_on_the_rows_with_no_known_noise() -> None:
    rows = [{"noise": []}, {"noise": ["duplicate"]}, {"noise": []}, {"noise": []},
            {"noise": ["machine", "unfaithful"]}, {"noise": []}]  # fmt: skip
    valid, kept = [0, 1, 2, 3, 4], [0, 2, 4]  # row 5 invalid; row 3 has no summary tokens
    has_target = np.array([True, True, True, False, True, True])
    pools = training_pools(rows, valid, kept, has_target)
    assert pools["raw"].tolist() == [0, 1, 2, 4]
    assert pools["curated"].tolist() == [0, 2, 4]
    assert pools["oracle"].tolist() == [0, 2]
    steps = {"oracle": 2}
    assert oracle_plan(rows, pools, steps, seeds=1) == ", oracle 2"
    assert oracle_plan(rows, pools, steps, seeds=0) == "; no oracle student (oracle_seeds is 0)"
    # a corpus that does not label its noise (or labels only some rows) has no oracle
    unlabelled = [{"text": "x"}, *rows[1:]]
    pools = training_pools(unlabelled, valid, kept, has_target)
    assert "oracle" not in pools
    assert oracle_plan(unlabelled, pools, steps, 1).endswith(
        "(the corpus does not label its noise)"
    )
    all_noisy = [{"noise": ["duplicate"]} for _ in rows]  # nothing clean: no oracle to train
    pools = training_pools(all_noisy, valid, kept, has_target)
    assert "oracle" not in pools
    assert oracle_plan(all_noisy, pools, steps, 1) == "; no oracle student (no row is clean)"


def test_factuality_threshold_is_set_at_the_stated_false_positive_rate() -> None:
    scores = [i / 10 for i in range(10)]  # 0.0 .. 0.9
    t = factuality_threshold([*scores, None], 0.2)
    assert sum(s < t for s in scores) == 2
    assert factuality_threshold([], 0.1) == 0.0


def test_verdict_applies_the_issue_bars() -> None:
    raw = {"ppl_mean": 20.0, "ppl_sd": 1.0, "pref_mean": 0.5, "pref_sd": 0.01,
           "cost_tokens": 1000}  # fmt: skip
    cur = {"ppl_mean": 17.5, "ppl_sd": 0.5, "pref_mean": 0.55, "pref_sd": 0.02,
           "cost_tokens": 700}  # fmt: skip
    v = verdict(raw, cur)
    assert v["ppl_better"] and v["ppl_gap_in_sd"] == 2.5
    assert v["pref_better"] and v["pref_gap_in_sd"] == pytest.approx(2.5)
    assert v["cheaper"] and v["cost_ratio"] == 0.7
    v = verdict(raw, cur | {"ppl_mean": 18.5, "cost_tokens": 900})
    assert not v["ppl_better"] and not v["cheaper"]


def test_a_capped_corpus_is_reported() -> None:
    from tasks.ablation.run import ablation_config, capped

    given = {"corpus_rows_given": 1250, "heldout_given": 60}
    assert capped(given, [{}] * 200, [{}] * 60) == {"corpus_rows": {"given": 1250, "used": 200}}
    assert capped(given | {"corpus_rows_given": 200}, [{}] * 200, [{}] * 60) is None
    assert capped({}, [{}] * 3, [{}] * 3) is None  # a built corpus: nothing given, nothing cut
    cfg = ablation_config("small", 2, 30, 20)
    assert (cfg.seeds, cfg.max_rows, cfg.max_heldout) == (2, 30, 20)
    assert (cfg.noise.rows, cfg.noise.heldout) == (30, 20)  # a built corpus: no larger
    cfg = ablation_config("default", None, None)
    assert (cfg.max_rows, cfg.max_heldout, cfg.noise.rows) == (128, 60, 128)
    cfg = ablation_config("default", None, 0, 0)  # 0 lifts the caps
    assert (cfg.max_rows, cfg.max_heldout, cfg.noise.rows, cfg.noise.heldout) == (
        None, None, 1000, 200,
    )  # fmt: skip


def test_both_students_share_an_init_cut_as_the_profile_says() -> None:
    import torch
    from transformers import LlamaForCausalLM

    from models.tiny import llama_config
    from tasks.ablation.config import AblationConfig
    from tasks.ablation.effect import student_init
    from tasks.ablation.run import WIDTH_STUDENT, ablation_config
    from tasks.distill.config import StudentConfig
    from tasks.distill.data import SPLIT_CODES, TokenBlocks

    assert ablation_config("default", None, None).student == StudentConfig(**WIDTH_STUDENT)
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(llama_config(40, hidden=32, ffn=64, layers=4, heads=4, kv_heads=2,
                                            positions=64, tie_word_embeddings=True)).eval()  # fmt: skip
    n = 6
    blocks = TokenBlocks(
        np.random.default_rng(0).integers(0, 40, (n, 12)).astype(np.int64),
        np.ones((n, 12), np.uint8), np.full(n, SPLIT_CODES["train"], np.int8),
        np.zeros(n, np.int64), np.arange(n), ["corpus"],
    )  # fmt: skip
    width = AblationConfig(student={"kind": "width", "share": 0.6, "kv_heads": 1}, batch_blocks=2)
    student, info = student_init(teacher, width, blocks)
    assert info["kind"] == "width" and info["kv_heads"] == 1 and info["layers"] == [0, 1, 2, 3]
    assert student.config.num_key_value_heads == 1
    assert sum(p.numel() for p in student.parameters()) <= 0.6 * sum(
        p.numel() for p in teacher.parameters()
    )
    # the (tied) vocabulary matrix stays frozen; everything else trains
    assert not student.get_input_embeddings().weight.requires_grad
    assert any(p.requires_grad for p in student.model.layers.parameters())
    # the same config cuts the same init (the raw and the curated student start equal)
    again, _ = student_init(teacher, width, blocks)
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(),
                                                 again.state_dict().values(), strict=True))  # fmt: skip
    layers, info = student_init(teacher, AblationConfig(layers=[0, 3, 9]), blocks)
    assert info == {"kind": "layers", "layers": [0, 3]} and layers.config.num_hidden_layers == 2


def test_reference_runs_give_way_to_the_deadline() -> None:
    # runs of 96 and 42 steps took 396 and 211 s: a fixed 67 s (evaluations) + 3.43 s a step
    done = [(96, 396.0), (42, 211.0), (96, 396.0)]
    assert projected_seconds(done, 34) == pytest.approx(67.1 + 3.426 * 34, abs=0.5)
    assert projected_seconds([(50, 100.0)], 25) == 50.0  # one step count: in proportion
    # 50 min gone: a 34-step run ends at ~53.1 min, a 96-step one at ~56.6
    assert past_deadline(3000.0, done, 34, 55) is None
    assert past_deadline(3000.0, done, 96, 55) == pytest.approx(56.6, abs=0.05)
    assert past_deadline(3000.0, done, 96, None) is None  # no deadline
    assert past_deadline(3000.0, [], 96, 1) is None  # nothing to project from yet
