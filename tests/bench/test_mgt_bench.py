"""bench/mgt.py end to end on a tiny model and a HaluEval-shaped corpus: splits by article,
every scorer reported per view, the threshold from CAL text, the stacker usable by the product."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from bench.mgt import SIZES, main
from tasks.curate.mgt import load_stacker, score_texts
from tests.helpers import NEWS_WORDS
from tests.tiny import make_tiny_llama

SCALE = 0.4  # the smallest that leaves CAL its 100 human texts (1% false positives)


def corpus(path: Path, n: int) -> Path:
    rng = random.Random(0)

    def words(k: int) -> str:
        return " ".join(rng.choice(NEWS_WORDS) for _ in range(k))

    with open(path, "w") as f:
        for _ in range(n):
            row = {"document": words(300), "right_summary": words(30) + " .\n",
                   "hallucinated_summary": words(rng.randint(20, 100))}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return path


@pytest.mark.slow
def test_the_bench_reports_test_rows_with_a_cal_threshold(tmp_path: Path) -> None:
    model = make_tiny_llama(tmp_path / "lm")
    stacker = tmp_path / "stacker.json"
    out = main([
        "--corpus", str(corpus(tmp_path / "c.jsonl", 400)), "--model", str(model),
        "--scale", str(SCALE), "--throughput-texts", "3", "--cache", str(tmp_path / "cache"),
        "--write-stacker", str(stacker), "--json", str(tmp_path / "out.json"),
    ])  # fmt: skip

    texts = [json.loads(line) for line in Path(out["texts_file"]).read_text().splitlines()]
    splits_of: dict[int, set[str]] = {}
    for t in texts:
        splits_of.setdefault(t["article"], set()).add(t["split"])
        assert t["text"] == t["text"].strip()
    assert all(len(s) == 1 for s in splits_of.values())  # no article in two splits
    by = {(t["split"], t["subset"]) for t in texts}
    assert ("fit", "chatgpt_summary") not in by  # the stacker never sees the other model's text
    assert {("test", "chatgpt_summary"), ("test", "smollm2_continuation")} <= by
    assert {t["subset"] for t in texts if t["split"] == "cal"} == {"highlights", "news"}
    assert sum(t["split"] == "cal" for t in texts) == round(SCALE * sum(SIZES["cal"].values()))

    scorers = [r["scorer"] for r in out["results"]]
    assert scorers[:2] == ["n_words (baseline)", "log_prob (baseline)"] and "stack" in scorers
    for r in out["results"]:
        assert 0.0 <= r["overall"] <= 1.0 and 0.0 <= r["chatgpt (cross-model)"] <= 1.0
        assert 0.0 <= r["tpr@1%"] <= 1.0 and 0.0 <= r["test fpr"] <= 1.0
    assert out["throughput"]["one_text_copy"]["wall_s"] > 0
    assert out["throughput"]["texts"] == 3 and out["throughput"]["binoculars"]["wall_s"] > 0
    written = json.loads((tmp_path / "out.json").read_text())["results"]
    assert [(r["scorer"], r["overall"]) for r in written] == [
        (r["scorer"], r["overall"]) for r in out["results"]
    ]

    assert "stack (free signs)" in scorers  # the unbounded fit, for comparison only

    fitted = load_stacker(stacker, performer=False)  # what the product reads
    assert fitted.features[-1] == "n_words" and "binoculars" in fitted.features
    # every LM feature means "higher = machine-like": the saved weights never count one against
    assert all(c >= 0 for f, c in zip(fitted.features, fitted.coef, strict=True) if f != "n_words")
    assert out["stacker"]["coef"] == fitted.coef
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec

    spec = ModelSpec(path=str(model))
    got = score_texts([texts[0]["text"]], load_causal_lm(spec, "cpu"), load_tokenizer(spec),
                      method="stack", stacker=fitted)  # fmt: skip
    assert 0.0 < got[0] < 1.0 and not math.isnan(got[0])
