"""TEST-side rule corruptions of human summaries for bench/factuality.py, written apart from
the training generator (tasks/factcheck/synth.py) so the bench does not only measure memorised
artefacts of it. Nothing here was tuned on the test articles. Kinds (seen = a kind the generator also makes, by another implementation):

  repo_rules    bench/filters.corrupt (entity / number / negation)              seen kinds
  role_swap     two entities of the summary trade places                        unseen
  antonym       won<->lost, rise<->fall, before<->after, guilty<->innocent ...  unseen
  number_t      a number word or digit moved by a small step, or a % scaled     seen kind
  ent_other     a name replaced by a name from another article's SUMMARY       seen kind
  doc_insert    a sentence of another article's DOCUMENT inserted               seen-ish
  age_detail    an invented age / count inserted after a name (", 47,")        unseen
  pronoun_all   every gendered word of one sentence flipped                    seen kind
"""

from __future__ import annotations

import random
import re

from bench.filters import corrupt as repo_corrupt
from tasks.curate.factuality import NUMBER_WORDS, entities, sentences

NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b")  # two+ capitalised words
ANTONYMS = [
    ("won", "lost"), ("wins", "loses"), ("win", "lose"), ("beat", "lost to"),
    ("rise", "fall"), ("rose", "fell"), ("increase", "decrease"), ("increased", "decreased"),
    ("higher", "lower"), ("more", "fewer"), ("before", "after"), ("guilty", "innocent"),
    ("first", "last"), ("up", "down"), ("approved", "rejected"), ("accepted", "refused"),
    ("arrested", "released"), ("open", "closed"), ("best", "worst"), ("biggest", "smallest"),
    ("largest", "smallest"), ("oldest", "youngest"), ("alive", "dead"), ("support", "oppose"),
    ("supported", "opposed"), ("allowed", "banned"), ("survived", "died"), ("early", "late"),
]  # fmt: skip
ANT = {}
for a, b in ANTONYMS:
    ANT.setdefault(a, b)
    ANT.setdefault(b, a)
ANT_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, ANT), key=len, reverse=True)) + r")\b")
NUMW = [w for w, i in NUMBER_WORDS.items() if 1 <= i <= 12]  # one .. twelve, in order
GENDER = {
    "he": "she", "she": "he", "him": "her", "his": "her", "her": "his", "himself": "herself",
    "herself": "himself", "man": "woman", "woman": "man", "men": "women", "women": "men",
    "boy": "girl", "girl": "boy", "son": "daughter", "daughter": "son", "father": "mother",
    "mother": "father", "husband": "wife", "wife": "husband", "king": "queen", "queen": "king",
}  # fmt: skip
GEN_RE = re.compile(r"\b(" + "|".join(GENDER) + r")\b", re.I)


def role_swap(summary: str, rng: random.Random, **_) -> str | None:
    names = list(dict.fromkeys(m.group() for m in NAME.finditer(summary)))
    names = [n for n in names if not any(n != o and n in o for o in names)]
    if len(names) < 2:
        return None
    a, b = rng.sample(names, 2)
    tmp = "\x00"
    out = summary.replace(a, tmp, 1).replace(b, a, 1).replace(tmp, b, 1)
    return out


def antonym(summary: str, rng: random.Random, **_) -> str | None:
    found = list(ANT_RE.finditer(summary))
    if not found:
        return None
    m = rng.choice(found)
    return summary[: m.start()] + ANT[m.group()] + summary[m.end() :]


def number_t(summary: str, rng: random.Random, **_) -> str | None:
    words = [m for m in re.finditer(r"\b(" + "|".join(NUMW) + r")\b", summary, re.I)]
    pct = list(re.finditer(r"(\d+(?:\.\d+)?)(\s?(?:%|per ?cent))", summary))
    digits = list(re.finditer(r"(?<![\d.,])(\d{1,3}(?:,\d{3})*)(?![\d.,])", summary))
    opts = []
    if words:
        m = rng.choice(words)
        i = NUMW.index(m.group().lower())
        j = min(max(i + rng.choice([-2, -1, 1, 2]), 0), len(NUMW) - 1)
        if j == i:
            j = i + 1
        new = NUMW[j].capitalize() if m.group()[0].isupper() else NUMW[j]
        opts.append(summary[: m.start()] + new + summary[m.end() :])
    if pct:
        m = rng.choice(pct)
        v = float(m.group(1))
        new = f"{v * rng.choice([0.5, 2, 1.5]):g}"
        opts.append(summary[: m.start(1)] + new + summary[m.end(1) :])
    if digits:
        m = rng.choice(digits)
        v = int(m.group(1).replace(",", ""))
        if 1900 <= v <= 2030:
            new = str(v + rng.choice([-10, -5, 5]))
        else:
            new = f"{v + max(1, v // 10) * rng.choice([-3, -2, 2, 3]):,}" if v > 3 else str(v + 4)
            if "," not in m.group(1):
                new = new.replace(",", "")
        opts.append(summary[: m.start(1)] + new + summary[m.end(1) :])
    return rng.choice(opts) if opts else None


def ent_other(summary: str, rng: random.Random, other_summary: str = "", document: str = "",
              **_) -> str | None:  # fmt: skip
    mine = list(dict.fromkeys(m.group() for m in NAME.finditer(summary)))
    theirs = [
        m.group() for m in NAME.finditer(other_summary) if m.group().lower() not in document.lower()
    ]
    if not mine or not theirs:
        return None
    return summary.replace(rng.choice(mine), rng.choice(theirs), 1)


def doc_insert(summary: str, rng: random.Random, other_document: str = "", **_) -> str | None:
    cands = [s for s in sentences(other_document)[:15] if 8 <= len(s.split()) <= 30]
    sents = sentences(summary)
    if not cands or not sents:
        return None
    sents.insert(rng.randint(0, len(sents)), rng.choice(cands))
    return " ".join(sents)


def age_detail(summary: str, rng: random.Random, document: str = "", **_) -> str | None:
    found = [m for m in NAME.finditer(summary) if m.group() in document]
    if not found:
        return None
    m = rng.choice(found)
    age = rng.randint(19, 78)
    while str(age) in document:
        age = rng.randint(19, 78)
    if summary[m.end() : m.end() + 1] == ",":  # already an apposition: skip
        return None
    return summary[: m.end()] + f", {age}," + summary[m.end() :]


def pronoun_all(summary: str, rng: random.Random, **_) -> str | None:
    sents = sentences(summary)
    idx = [i for i, s in enumerate(sents) if GEN_RE.search(s)]
    if not idx:
        return None
    i = rng.choice(idx)

    def flip(m):
        w = GENDER[m.group().lower()]
        return w.capitalize() if m.group()[0].isupper() else w

    sents[i] = GEN_RE.sub(flip, sents[i])
    return " ".join(sents)


def repo_rules(summary: str, rng: random.Random, document: str = "", corpus_ents=(), **_):
    got = repo_corrupt(summary, document, list(corpus_ents), rng)
    return got[0] if got else None


KINDS = {
    "repo_rules": repo_rules,
    "role_swap": role_swap,
    "antonym": antonym,
    "number_t": number_t,
    "ent_other": ent_other,
    "doc_insert": doc_insert,
    "age_detail": age_detail,
    "pronoun_all": pronoun_all,
}


def rule_test_set(rows: list[dict], others: list[dict], seed: int = 1) -> list[dict]:
    """Per article: the human summary (label 1) and one corruption (label 0) of a kind drawn
    uniformly among those that apply. `others`: articles to borrow names/sentences from
    (disjoint from `rows`' training data, may be other test articles)."""
    rng = random.Random(seed)
    corpus_ents = sorted({e for r in others for e in entities(r["right_summary"])})
    out = []
    for r in rows:
        doc, summ = r["document"], r["right_summary"]
        o = rng.choice(others)
        while o["idx"] == r["idx"]:
            o = rng.choice(others)
        kinds = list(KINDS)
        rng.shuffle(kinds)
        out.append({"document": doc, "summary": summ, "label": 1, "kind": "human", "idx": r["idx"]})
        for k in kinds:
            c = KINDS[k](summ, rng, document=doc, other_summary=o["right_summary"],
                         other_document=o["document"], corpus_ents=corpus_ents)  # fmt: skip
            if c and c.strip() != summ.strip():
                out.append({"document": doc, "summary": c, "label": 0, "kind": k, "idx": r["idx"]})
                break
    return out


def real_test_set(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        out.append({"document": r["document"], "summary": r["right_summary"], "label": 1,
                    "kind": "human", "idx": r["idx"]})  # fmt: skip
        out.append({"document": r["document"], "summary": r["hallucinated_summary"], "label": 0,
                    "kind": "chatgpt", "idx": r["idx"]})  # fmt: skip
    return out
