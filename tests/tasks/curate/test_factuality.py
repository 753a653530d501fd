from __future__ import annotations

import math

import pytest

from models.tiny import bert_config, llama_config
from tasks.curate.factuality import entities, entity_precision, numbers

DOC = (
    "Marseille prosecutor Brice Robin told CNN that no videos were used in the crash "
    "investigation of Germanwings Flight 9525. All 150 people on board died. The plane "
    "crashed in the French Alps on Tuesday, about 1,200 metres above sea level, two hours "
    "after leaving Barcelona."
)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec
    from tests.tiny import make_tiny_llama

    spec = ModelSpec(path=str(make_tiny_llama(tmp_path_factory.mktemp("f") / "lm")))
    return load_causal_lm(spec, "cpu"), load_tokenizer(spec)


def test_numbers_are_normalised_and_number_words_count() -> None:
    assert numbers("It cost $1,200.50 for 3 people, two of them kids.") == {"1200.5", "3", "2"}
    assert numbers("Flight 9525 had 150.0 seats") == {"9525", "150"}


def test_entities_skip_common_sentence_openers() -> None:
    found = entities("The plane crashed. It was in the French Alps. Brice Robin spoke to CNN.")
    assert found == {"french alps", "brice robin", "cnn"}


def test_a_faithful_summary_is_fully_supported() -> None:
    p = entity_precision(DOC, "Prosecutor Brice Robin says no videos were used. All 150 died.")
    assert p.score == 1.0 and p.unsupported == ()


def test_a_swapped_entity_or_changed_number_is_caught() -> None:
    p = entity_precision(DOC, "Brice Robin says 180 people died near Lyon on the Lufthansa flight.")
    assert set(p.unsupported) == {"180", "lyon", "lufthansa"}
    assert p.score == 1 / 4  # only "brice robin" is supported


def test_nothing_checkable_gives_no_score() -> None:
    p = entity_precision(DOC, "the investigation continues.")
    assert p.entities == 0 and p.score is None


def test_lm_support_prefers_summaries_the_document_contains(tmp_path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tasks.curate.factuality import lm_support
    from tests.helpers import NEWS_WORDS
    from tests.tiny import make_tokenizer_dir

    # A tiny LM trained for a few steps to copy: after the document, it predicts its words.
    path = make_tokenizer_dir(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(len(tok), kv_heads=4, positions=128))
    words = NEWS_WORDS
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):  # learn "x y z | x y z": copy the first half
        half = torch.randint(3, len(tok), (16, 8), generator=g)
        batch = torch.cat([half, half], 1)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    rng = torch.Generator().manual_seed(1)
    docs = [
        " ".join(words[i] for i in torch.randint(0, 12, (8,), generator=rng)) for _ in range(20)
    ]
    faithful = lm_support([(d, d) for d in docs], model, tok)
    shuffled = lm_support([(d, docs[(i + 1) % 20]) for i, d in enumerate(docs)], model, tok)
    assert sum(faithful) / 20 > sum(shuffled) / 20 + 0.5
    assert lm_support([("the news", "   ")], model, tok) == [None]


def test_combine_precision_alone_lm_logistic_and_nli_mean() -> None:
    from tasks.curate.factuality import LmSupport, combine
    from tasks.curate.factuality_config import CombineWeights

    assert combine(None, None) is None
    assert combine(0.5, None) == 0.5  # precision alone is the score
    w = CombineWeights(bias=-1.0, precision=2.0, lm_mean=1.0, lm_low=0.5)
    got = combine(0.5, LmSupport(mean=0.4, low=-2.0), w)
    assert got == pytest.approx(1 / (1 + math.exp(-(-1.0 + 1.0 + 0.4 - 1.0))))
    # nothing checkable counts as fully precise; a bare float is a mean lift
    assert combine(None, 0.3, w) == combine(1.0, LmSupport(0.3, 0.3), w)
    assert combine(0.5, None, w, nli=0.9) == pytest.approx(0.7)  # mean with the NLI score
    assert combine(None, None, w, nli=0.9) == 0.9
    assert 0.0 < combine(0.0, LmSupport(-1e6, -1e6), w) < 1e-20  # no overflow


def test_lm_support_features_batching_and_bad_pairs(tiny_lm) -> None:
    from tasks.curate.factuality import lm_support_features

    model, tok = tiny_lm
    doc = "the police said the court in the city met the minister"
    pairs = [
        (doc, "the court met the minister"),
        (doc, ""),  # empty summary: no score
        ("", "the court met the minister"),  # empty document: scored against nothing
        ("the court", doc + " and " + doc),  # summary longer than its document
        ("Le ministre a rencontré la cour à Paris.", "La cour a parlé."),  # not English
    ]
    got = lm_support_features(pairs, model, tok, batch_size=2)
    assert got[1] is None
    assert got[2].mean == pytest.approx(0.0, abs=1e-5) and got[2].low == pytest.approx(
        0.0, abs=1e-5
    )
    for f in (got[0], got[3], got[4]):
        assert math.isfinite(f.mean) and f.low <= f.mean + 1e-6
    one = lm_support_features([pairs[3]], model, tok, batch_size=1)[0]
    assert one.mean == pytest.approx(got[3].mean, abs=1e-4)  # padding changes nothing


def test_precision_on_bad_input_is_defined() -> None:
    assert entity_precision("", "Obama met 3 people.").score == 0.0  # nothing supported
    assert entity_precision(DOC, "").score is None
    long = entity_precision("Robin spoke.", "Robin spoke. " * 50)
    assert long.score == 1.0
    # Non-Latin scripts have no capitalised runs: only numbers are checkable.
    assert entity_precision("北京 有 3 个 人", "北京 有 3 个 人").score == 1.0
    assert entity_precision("北京 有 3 个 人", "上海").score is None


# --------------------------------------------------------------------------- NLI
def _tiny_nli(tmp_path, labels: dict[int, str]):
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    from tests.tiny import WORDS

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = bert_config(
        len(vocab), num_labels=len(labels), id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return model, tok


def test_nli_scores_summac_zs_with_a_tiny_classifier(tmp_path) -> None:
    import torch

    from tasks.curate.factuality import nli_scores, sentences

    model, tok = _tiny_nli(tmp_path, {0: "entailment", 1: "neutral", 2: "contradiction"})
    doc = "The police said the court met. The minister was in the city. It rained."
    pairs = [(doc, "The court met. The minister was in the city."), (doc, ""), ("", "x.")]
    got = nli_scores(pairs, model, tok)
    assert got[1] is None and got[2] is None and 0.0 <= got[0] <= 1.0
    # By hand: max over document sentences of P(entail) - P(contradict), mean, to [0, 1].
    doc_s, sum_s = sentences(doc), sentences(pairs[0][1])
    assert len(doc_s) == 3 and len(sum_s) == 2
    margins = []
    for h in sum_s:
        enc = tok(doc_s, [h] * 3, padding=True, return_tensors="pt")
        with torch.inference_mode():
            p = torch.softmax(model(**enc).logits, -1)
        margins.append((p[:, 0] - p[:, 2]).max().item())
    assert got[0] == pytest.approx((sum(margins) / 2 + 1) / 2, abs=1e-5)


def test_nli_model_without_an_entailment_label_is_refused(tmp_path) -> None:
    from tasks.curate.config import CurateError
    from tasks.curate.scores import load_nli

    _tiny_nli(tmp_path, {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(CurateError, match="no single 'entailment' label"):
        load_nli(str(tmp_path))
