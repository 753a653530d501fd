"""Text helpers shared by the generator, the classifier and the stacker: content words,
evidence retrieval (which document sentences a summary sentence leans on, `Doc`) and the
model-free per-pair features (`cheap_features`).

No tagger or parser ships offline, so everything here is regular expressions and word sets;
sentences, entities and numbers come from `tasks.curate.factuality` (one definition of each).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from tasks.curate.factuality import entities, entity_precision, numbers, sentences


def wordset(words: str) -> frozenset[str]:
    """The words of a space-separated list, as a set (word lists stay readable on a line)."""
    return frozenset(words.split())


def wordlist(words: str) -> tuple[str, ...]:
    """The words of a space-separated list, in order (rules that draw from them stay seeded)."""
    return tuple(words.split())


# Words of any script; CJK/kana/hangul characters count one word each (no spaces to split on).
WORD = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W_]+(?:['’][^\W_]+)?")
STOP = wordset(
    """a an the of to in on at for by with from and or but as is are was were be been being has
    have had do does did will would can could should may might must it its it's he she they
    them his her their hers theirs him we us our you your i me my this that these those
    there here who whom whose which what when where why how than then so if about into over
    after before up down out off also just said says say told not no new one more most after
    while all any some such only own same other s t"""
)
NEG = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|neither|nor|without|cannot|n't)\b|n['’]t\b", re.I
)


def words(text: str) -> list[str]:
    """Lower-cased words of any script."""
    return WORD.findall((text or "").lower())


def content(text: str) -> list[str]:
    """Words that carry content (stop words out): what evidence retrieval matches on."""
    return [w for w in words(text) if w not in STOP]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    """The distinct word n-grams of `tokens`."""
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class Doc:
    """A document's sentences and their content-word sets, built once per pair."""

    def __init__(self, document: str, max_sentences: int = 2000) -> None:
        self.text = document or ""
        self.sents = sentences(self.text)[:max_sentences] or ([self.text] if self.text else [])
        self.sets = [set(content(s)) for s in self.sents]
        df = Counter(w for s in self.sets for w in s)
        n = max(len(self.sets), 1)
        self.idf = {w: math.log(1 + n / c) for w, c in df.items()}
        self.words = set(words(self.text))

    def weight(self, w: str) -> float:
        # A word absent from the document weighs most: it cannot be supported anywhere.
        return self.idf.get(w, math.log(1 + len(self.sets) + 1))

    def rank(self, claim: str) -> list[tuple[float, int]]:
        """(IDF-weighted recall of the claim's content words, sentence index), best first."""
        cw = set(content(claim))
        if not cw or not self.sents:
            return []
        total = sum(self.weight(w) for w in cw)
        scored = [(sum(self.weight(w) for w in cw & s) / total, i) for i, s in enumerate(self.sets)]
        scored.sort(key=lambda t: (-t[0], t[1]))
        return scored

    def evidence(self, claim: str, k: int = 3, max_words: int = 80) -> str:
        """The k best-matching sentences in document order, cut to about max_words words:
        what the classifier reads as the premise for `claim`."""
        ranked = self.rank(claim)[:k]
        if not ranked:
            return " ".join(self.text.split()[:max_words])
        chosen = sorted(i for _, i in ranked)
        out, budget = [], max_words
        for i in chosen:
            toks = self.sents[i].split()
            if budget <= 0:
                break
            out.append(" ".join(toks[:budget]))
            budget -= len(toks)
        return " ".join(out)

    def coverage(self, claim: str, window: int = 2) -> float:
        """Best IDF-weighted recall of the claim's content words in `window` consecutive
        sentences (1.0 when the claim has no content words)."""
        cw = set(content(claim))
        if not cw:
            return 1.0
        total = sum(self.weight(w) for w in cw)
        best = 0.0
        for i in range(len(self.sets)):
            u = set().union(*self.sets[i : i + window])
            best = max(best, sum(self.weight(w) for w in cw & u) / total)
        return best


MALE = wordset("he him his himself man boy father son husband brother mr")
FEMALE = wordset("she her hers herself woman girl mother daughter wife sister mrs ms")


def local_support(doc: Doc, claim: str, window: int = 2) -> tuple[int, int, int]:
    """(checked, supported, gender_clash) for a claim: each entity / number of the claim is
    looked for in the document window that the REST of the claim's content words retrieve
    best. A name of the document moved into a sentence about something else fails here
    although plain entity precision passes it. gender_clash: the claim's gendered words are
    all of one sex and the window's all of the other."""
    items = sorted(entities(claim)) + sorted(numbers(claim))
    cw = set(content(claim))
    checked = supported = 0
    for it in items:
        it_words = set(words(it))
        rest = cw - it_words
        if not rest or not doc.sets:
            continue
        total = sum(doc.weight(w) for w in rest)
        best, best_i = -1.0, 0
        for i in range(len(doc.sets)):
            u = set().union(*doc.sets[max(0, i - window + 1) : i + 1])
            sc = sum(doc.weight(w) for w in rest & u) / total
            if sc > best:
                best, best_i = sc, i
        lo = max(0, best_i - window + 1)
        win_text = " ".join(doc.sents[lo : best_i + 1]).lower()
        win_words = set(words(win_text)) | numbers(" ".join(doc.sents[lo : best_i + 1]))
        checked += 1
        if it in win_text or it_words <= win_words:
            supported += 1
    cws = set(words(claim))
    clash = 0
    cm, cf = bool(cws & MALE), bool(cws & FEMALE)
    if cm != cf:
        ev = set(words(doc.evidence(claim, k=2)))
        em, ef = bool(ev & MALE), bool(ev & FEMALE)
        if em != ef and em != cm:
            clash = 1
    return checked, supported, clash


CHEAP_FEATURES = (
    "n_words",
    "n_sents",
    "len_ratio",
    "ent_prec",
    "num_prec",
    "n_unsupported",
    "novel_uni",
    "novel_bi",
    "novel_tri",
    "cov_min",
    "cov_mean",
    "neg_mismatch",
    "loc_prec",
    "loc_min",
    "gender_clash",
)
# Which way each cheap feature may push `factuality_score` (+1: higher = more faithful, -1:
# higher = less, 0: free). A prior, not a fit: half the synthetic pairs a stacker learns from
# are rule edits of one sentence (all of them were, before synth's `unsupported` pairs), where
# e.g. mean coverage says little once min coverage is known, and an unconstrained fit will
# happily give a feature the sign opposite to its meaning (the earlier fallback weighed
# cov_mean at -0.92), which then fails on real, model-written errors.
CHEAP_FEATURE_SIGNS = {
    "n_words": -1, "n_sents": 0, "len_ratio": -1, "ent_prec": 1, "num_prec": 1,
    "n_unsupported": -1, "novel_uni": -1, "novel_bi": -1, "novel_tri": -1, "cov_min": 1,
    "cov_mean": 1, "neg_mismatch": -1, "loc_prec": 1, "loc_min": 1, "gender_clash": -1,
}  # fmt: skip


def cheap_features(document: str, summary: str, doc: Doc | None = None) -> dict[str, float]:
    """Model-free features of a (document, summary) pair. Defined for every input: an empty
    summary gets zeros/ones that read as 'nothing to check'."""
    doc = doc or Doc(document)
    sw = words(summary)
    dw = words(document)
    sents = sentences(summary) or ([summary] if (summary or "").strip() else [])
    prec = entity_precision(document or "", summary or "")
    nums = numbers(summary or "")
    dnums = numbers(document or "")
    ents = entities(summary or "")
    f: dict[str, float] = {}
    f["n_words"] = float(len(sw))
    f["n_sents"] = float(len(sents))
    f["len_ratio"] = len(sw) / max(len(dw), 1)
    n_ent_checks = prec.entities - len(nums)
    ent_missing = sum(1 for u in prec.unsupported if u in ents)
    f["ent_prec"] = 1.0 - ent_missing / n_ent_checks if n_ent_checks > 0 else 1.0
    f["num_prec"] = len(nums & dnums) / len(nums) if nums else 1.0
    f["n_unsupported"] = float(len(prec.unsupported))
    for n, name in ((1, "novel_uni"), (2, "novel_bi"), (3, "novel_tri")):
        sg = ngrams(sw, n)
        f[name] = len(sg - ngrams(dw, n)) / len(sg) if sg else 0.0
    covs = [doc.coverage(s) for s in sents] or [1.0]
    f["cov_min"] = min(covs)
    f["cov_mean"] = sum(covs) / len(covs)
    mism = 0
    for s in sents:
        ev = doc.evidence(s, k=2)
        if bool(NEG.search(s)) != bool(NEG.search(ev)):
            mism += 1
    f["neg_mismatch"] = float(mism)
    tot_c = tot_s = clashes = 0
    mins = []
    for s in sents:
        c, sup, cl = local_support(doc, s)
        tot_c += c
        tot_s += sup
        clashes += cl
        if c:
            mins.append(sup / c)
    f["loc_prec"] = tot_s / tot_c if tot_c else 1.0
    f["loc_min"] = min(mins) if mins else 1.0
    f["gender_clash"] = float(clashes)
    return f
