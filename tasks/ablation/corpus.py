"""A corpus with known noise: real (article, human summary) pairs, plus near-duplicate copies,
machine-written articles and unfaithful summaries at stated rates, each row labelled.

Every row is {id, text, summary, noise, detail}: `noise` lists the kinds it carries
(`duplicate`, `machine`, `unfaithful`; empty for a clean row) and `detail` how it was made.
A near-duplicate copy inherits its original's kinds; of a group of copies, the rows after the
first in corpus order are the `duplicate`s (the product keeps the first). The held-out and
calibration rows are clean pairs of articles the corpus never uses.

Noise:
- duplicate: a copy whose article has random words substituted until its word 5-gram
  Jaccard to the original falls to a target drawn from [min_jaccard, max_jaccard];
- machine: the teacher continues the first tokens of the real article (sampled), the human
  summary stays (so the pair is machine text and, past its first line, unsupported);
- unfaithful: HaluEval's ChatGPT-written hallucinated summary where there is one, or rule
  corruptions of the human summary (`corrupt`), FactCC-style (Kryściński et al. 2020).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.ablation.config import NoiseConfig

NOISE_KINDS = ("duplicate", "machine", "unfaithful")


def labelled(rows: list[dict[str, Any]]) -> bool:
    """Whether every row says which noise it carries (a `noise` list; empty when clean), so the
    filters can be scored against the truth. A user's corpus has no such column."""
    return bool(rows) and all(r.get("noise") is not None for r in rows)


# --------------------------------------------------------------------------- rule corruptions
# A capitalised run that does not open a sentence (an entity, roughly): after a lower-case
# word, a comma or a digit.
_ENTITY = re.compile(r"(?<=[a-z0-9,;:] )[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*")
_NUMBER = re.compile(r"(?<![\w.,$£€])\d[\d,]*(?:\.\d+)?(?![\w])")
_AUX = re.compile(
    r"\b(is|was|are|were|has|have|had|will|can|could|would|should|did|does|do|may|must)\b"
)
_NOT = re.compile(r"\s+not\b|n't\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORDS = re.compile(r"\w+")


def entity_pool(summaries: list[str]) -> list[str]:
    """Entities of these summaries: what an entity swap draws from."""
    return sorted({m.group() for s in summaries for m in _ENTITY.finditer(s)})


def _swap_entity(s: str, document: str, pool: list[str], rng: random.Random) -> str | None:
    found = list(_ENTITY.finditer(s))
    if not found or not pool:
        return None
    m = rng.choice(found)
    doc = document.lower()
    for _ in range(20):
        new = rng.choice(pool)
        if new.lower() not in doc and new != m.group() and new.lower() not in s.lower():
            return s[: m.start()] + new + s[m.end() :]
    return None


def _change_number(s: str, document: str, rng: random.Random) -> str | None:
    found = list(_NUMBER.finditer(s))
    if not found:
        return None
    m = rng.choice(found)
    raw = m.group().replace(",", "")
    value = float(raw)
    for _ in range(20):
        delta = max(1, round(abs(value) * rng.uniform(0.2, 0.6)))
        new = value + rng.choice([-1, 1]) * delta
        if new < 0:
            continue
        text = f"{new:.{len(raw.split('.')[1])}f}" if "." in raw else str(int(new))
        if "," in m.group() and "." not in raw:
            text = f"{int(new):,}"
        if not re.search(rf"(?<![\d,.]){re.escape(text)}(?![\d,])", document):
            return s[: m.start()] + text + s[m.end() :]
    return None


def _flip_negation(s: str) -> str | None:
    m = _NOT.search(s)
    if m:
        return s[: m.start()] + s[m.end() :]
    m = _AUX.search(s)
    if not m:
        return None
    return s[: m.end()] + " not" + s[m.end() :]


def corrupt(
    summary: str, document: str, pool: list[str], rng: random.Random
) -> tuple[str, list[str]] | None:
    """The summary with one rule corruption in each sentence that admits one (an entity swapped
    for one of `pool` the document never mentions, a number changed to one it never states, a
    negation added or removed), and the kinds applied; None when no sentence admits any."""
    parts = _SENTENCE_END.split(summary.strip())
    kinds: list[str] = []
    out = []
    for sentence in parts:
        order = ["entity", "number", "negation"]
        rng.shuffle(order)
        new = None
        for kind in order:
            if kind == "entity":
                new = _swap_entity(sentence, document, pool, rng)
            elif kind == "number":
                new = _change_number(sentence, document, rng)
            else:
                new = _flip_negation(sentence)
            if new is not None and new != sentence:
                kinds.append(kind)
                break
        out.append(sentence if new is None else new)
    if not kinds:
        return None
    return " ".join(out), kinds


# --------------------------------------------------------------------------- near duplicates
def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams (the near-dup filter's unit, tasks/curate/minhash.py)."""
    words = _WORDS.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y) if x or y else 1.0


def near_copy(
    text: str, target: float, vocabulary: list[str], rng: random.Random
) -> tuple[str, float]:
    """`text` with random words replaced (by words of `vocabulary`) until its 5-gram Jaccard to
    `text` is at most `target`; returns the copy and its Jaccard."""
    pieces = re.split(r"(\w+)", text)  # odd indices are words
    word_at = [i for i in range(1, len(pieces), 2)]
    order = word_at[:]
    rng.shuffle(order)
    base = shingles(text)
    j = 1.0
    step = max(1, len(word_at) // 200)  # a few words at a time on long articles
    for k in range(0, len(order), step):
        for i in order[k : k + step]:
            pieces[i] = rng.choice(vocabulary)
        copy = "".join(pieces)
        cur = shingles(copy)
        j = len(base & cur) / len(base | cur) if base or cur else 1.0
        if j <= target:
            return copy, j
    return "".join(pieces), j


# --------------------------------------------------------------------------- the corpus
@dataclass
class NoisyCorpus:
    rows: list[dict[str, Any]]  # id, text, summary, noise, detail
    heldout: list[dict[str, Any]]  # id, text, summary
    calibration: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {k: sum(k in r.get("noise", []) for r in self.rows) for k in NOISE_KINDS}
        out["noisy"] = sum(bool(r.get("noise")) for r in self.rows)
        out["rows"] = len(self.rows)
        return out


def read_source(
    path: str | Path,
    text_field: str = "document",
    summary_field: str = "right_summary",
    hallucinated_field: str = "hallucinated_summary",
) -> list[dict[str, str]]:
    """(text, summary, hallucinated) records of a JSONL file of pairs, in file order."""
    out = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            text, summary = d.get(text_field), d.get(summary_field)
            if isinstance(text, str) and isinstance(summary, str) and text.strip():
                out.append(
                    {"text": text, "summary": summary, "hallucinated": d.get(hallucinated_field)}
                )
    return out


def text_key(text: str) -> str:
    """Identity of an article for disjointness checks (whitespace and case folded)."""
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()


MachineWriter = Callable[[list[str]], list[str]]


def build_corpus(
    source: list[dict[str, str]], cfg: NoiseConfig, write_machine: MachineWriter | None
) -> NoisyCorpus:
    """Draw the corpus, held-out and calibration articles from `source` (disjoint) and inject
    the noise of `cfg`. `write_machine(articles) -> machine texts` writes the machine articles
    (None: the machine share must be 0)."""
    rng = random.Random(cfg.seed)
    pool = [r for r in source if len(r["text"]) >= cfg.min_chars and r["summary"].strip()]
    rng.shuffle(pool)
    n_dup = round(cfg.rows * cfg.duplicate_share)
    n_orig = cfg.rows - n_dup
    n_machine = round(cfg.rows * cfg.machine_share)
    n_unfaithful = round(cfg.rows * cfg.unfaithful_share)
    need = n_orig + cfg.heldout + cfg.calibration
    if len(pool) < need:
        raise ValueError(f"the source has {len(pool)} usable pairs; {need} are needed")
    if n_machine and write_machine is None:
        raise ValueError("machine-written rows need a teacher to write them")
    originals = [dict(r) for r in pool[:n_orig]]
    heldout = pool[n_orig : n_orig + cfg.heldout]
    calibration = pool[n_orig + cfg.heldout : need]
    for r in originals:
        r["noise"], r["detail"] = [], {}
    order = list(range(n_orig))
    rng.shuffle(order)
    machine_idx = order[:n_machine]
    unfaithful_idx = order[n_machine : n_machine + n_unfaithful]
    if machine_idx:
        assert write_machine is not None
        texts = write_machine([originals[i]["text"] for i in machine_idx])
        for i, text in zip(machine_idx, texts, strict=True):
            originals[i]["text"] = text
            originals[i]["noise"].append("machine")
            originals[i]["detail"]["machine"] = "teacher continuation of the article's lead"
    entities = entity_pool([r["summary"] for r in originals])
    for i in unfaithful_idx:
        r = originals[i]
        hallucinated = r.get("hallucinated")
        use_real = isinstance(hallucinated, str) and hallucinated.strip()
        use_real = use_real and rng.random() < cfg.hallucinated_share
        made = None if use_real else corrupt(r["summary"], r["text"], entities, rng)
        if made is None and not (isinstance(hallucinated, str) and hallucinated.strip()):
            continue  # neither applies: the row stays clean (counted as such)
        if made is None:
            r["summary"], r["detail"]["unfaithful"] = hallucinated, "model hallucination"
        else:
            r["summary"], r["detail"]["unfaithful"] = made[0], "rules: " + ",".join(made[1])
        r["noise"].append("unfaithful")
    # Near-duplicate copies of random originals, at a drawn Jaccard.
    vocabulary = sorted({w for r in originals[:200] for w in _WORDS.findall(r["text"])})
    rows = [(r, i) for i, r in enumerate(originals)]
    for _ in range(n_dup):
        g = rng.randrange(n_orig)
        target = rng.uniform(cfg.min_jaccard, cfg.max_jaccard)
        text, j = near_copy(originals[g]["text"], target, vocabulary, rng)
        copy = {
            "text": text,
            "summary": originals[g]["summary"],
            "noise": list(originals[g]["noise"]),
            "detail": dict(originals[g]["detail"]) | {"jaccard": round(j, 3)},
        }
        rows.append((copy, g))
    rng.shuffle(rows)
    seen: set[int] = set()
    out = []
    for k, (r, group) in enumerate(rows):
        noise = list(r["noise"])
        if group in seen:
            noise.insert(0, "duplicate")
        seen.add(group)
        out.append(
            {
                "id": f"row-{k:05d}",
                "text": r["text"],
                "summary": r["summary"],
                "noise": noise,
                "detail": r["detail"] | {"group": group},
            }
        )
    return NoisyCorpus(
        rows=out,
        heldout=[
            {"id": f"heldout-{k:04d}", "text": r["text"], "summary": r["summary"]}
            for k, r in enumerate(heldout)
        ],
        calibration=[
            {"id": f"calib-{k:04d}", "text": r["text"], "summary": r["summary"]}
            for k, r in enumerate(calibration)
        ],
    )


def calibration_rows(
    source: list[dict[str, str]], avoid: list[dict[str, Any]], n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """`n` clean pairs of `source` whose article is none of `avoid`'s (for a given corpus)."""
    banned = {text_key(r["text"]) for r in avoid}
    pool = [r for r in source if r["summary"].strip() and text_key(r["text"]) not in banned]
    random.Random(seed + 1).shuffle(pool)
    return [
        {"id": f"calib-{k:04d}", "text": r["text"], "summary": r["summary"]}
        for k, r in enumerate(pool[:n])
    ]


def teacher_writer(
    model: Any, tokenizer: Any, cfg: NoiseConfig, batch: int = 16, progress: bool = True
) -> MachineWriter:
    """A `write_machine` function: the teacher continues each article's first
    `machine_prompt_tokens` tokens for `machine_new_tokens` (sampled: temperature 1, top-p
    0.95, batched), the prompt kept at the start of the text."""

    def write(articles: list[str]) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        torch.manual_seed(cfg.seed)
        prompts = [
            tokenizer(a, add_special_tokens=False)["input_ids"][: cfg.machine_prompt_tokens]
            for a in articles
        ]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        out: list[str] = [""] * len(articles)
        device = next(model.parameters()).device
        bar = tqdm(total=len(articles), desc="teacher writes articles", disable=not progress)
        for lo in range(0, len(prompts), batch):
            chunk = prompts[lo : lo + batch]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for i, p in enumerate(chunk):  # left padding: every prompt ends where generation starts
                ids[i, width - len(p) :] = torch.tensor(p)
                attn[i, width - len(p) :] = 1
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=ids.to(device), attention_mask=attn.to(device), do_sample=True,
                    temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=cfg.machine_new_tokens,
                    min_new_tokens=cfg.machine_new_tokens, pad_token_id=pad,
                )  # fmt: skip
            for i, p in enumerate(chunk):
                new = tokenizer.decode(gen[i, width:], skip_special_tokens=True)
                out[lo + i] = tokenizer.decode(p) + new
            bar.update(len(chunk))
        bar.close()
        return out

    return write


def write_jsonl(
    rows: list[dict[str, Any]], path: Path, fields: tuple[str, ...] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in fields} if fields else r) + "\n")
    tmp.rename(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a corpus or held-out file: id, text, summary (and noise, when labelled)."""
    rows = []
    with open(path) as f:
        for k, line in enumerate(f):
            if not line.strip():
                continue
            d = json.loads(line)
            if not isinstance(d.get("text"), str) or not isinstance(d.get("summary"), str):
                raise ValueError(f"{path}:{k + 1}: needs string fields text and summary")
            d.setdefault("id", f"{Path(path).name}:{k + 1}")
            d["id"] = str(d["id"])
            rows.append(d)
    return rows
