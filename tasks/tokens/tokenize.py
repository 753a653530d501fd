"""Tokenize and pack: documents of a gated snapshot -> fixed-length blocks (a `tokens` snapshot).

Each document becomes tokens + EOS; documents are concatenated and cut into blocks of
`block_size` (the last one padded with EOS under loss mask 0). A pair is rendered with the
config's template, and with `mask_prompt` only its summary tokens (and the EOS) carry loss.
Documents go to train, selection or test by their content hash (`split_of`), so adding data
never moves a document between splits; selection blocks choose (keep-best, early stop), test
blocks are what every reported figure is computed on, and the two never share a document. A kept row that curate down-weighted (`sample_weight` < 1, machine-like
text) is included with probability = its weight, decided by other bits of its content hash.
One tokens version is made per source version (they are deltas),
and a source version that already has one is skipped: reruns do nothing.

Budgets: with `max_documents`, a run tokenizes at most that many documents of a source version
and records how many it read (`source_offset`, `source_rows`) and how many are left
(`source_remaining`, also reported as over budget); the version stays pending, and the next run
continues where this one stopped. Never silently dropped, never marked done early.

Curated first: once a raw version has a gated curated version, tokens made from the raw one
before it was curated are superseded (`trainable_tokens` leaves them out of training), and the
curated one is tokenized: uncurated rows never reach training beside their curated selves.

Before anything is written, the tokens gate checks the run against the dataset's other tokens
snapshots (block size, tokenizer): they are trained on together, so a mismatch fails with the
reason instead of wedging every later run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from tqdm.auto import tqdm

from data_quality import GatesConfig, gate
from models.loading import load_tokenizer, tokenizer_sha256
from models.loading_config import ModelSpec
from tasks.runtime import current_flow_run_id
from tasks.tokens.config import TokensConfig
from tasks.tokens.pending import progress_of, source_stage
from warehouse import Catalog, DatasetRef, validate_name

log = logging.getLogger(__name__)


class TokenizeError(RuntimeError):
    """Nothing to tokenize, or a tokenizer that cannot serve this teacher."""


def tokens_schema(block_size: int) -> pa.Schema:
    return pa.schema(
        [
            ("block", pa.int64()),
            ("split", pa.string()),
            ("input_ids", pa.list_(pa.int32(), block_size)),
            ("loss_mask", pa.list_(pa.uint8(), block_size)),
            ("doc_ids", pa.list_(pa.string())),
        ]
    )


SPLITS = ("train", "selection", "test")


def split_of(content_sha256: str, cfg: TokensConfig) -> str:
    """A document's split, stable as data grows: held out when the content hash's bits 0..31
    fall under `validation_share`; a held-out document is for `selection` (keep-best, early
    stopping, a refresh's keep-best) when bits 64..95 fall under `selection_share`, else for
    `test` (every figure reported). Bits 32..63 decide down-weighted rows (`included`)."""
    if int(content_sha256[:8], 16) / 2**32 >= cfg.validation_share:
        return "train"
    return "selection" if int(content_sha256[16:24], 16) / 2**32 < cfg.selection_share else "test"


def render(
    text: str, summary: str | None, tokenizer: Any, cfg: TokensConfig
) -> tuple[list[int], list[int]]:
    """(token ids, loss mask) of one document, EOS included."""
    eos = tokenizer.eos_token_id
    if summary is not None and cfg.pairs == "summarize":
        prompt, _, tail = cfg.template.partition("{summary}")
        p_ids = tokenizer(prompt.format(document=text), add_special_tokens=False)["input_ids"]
        s_ids = tokenizer(summary + tail.format(document=text), add_special_tokens=False)[
            "input_ids"
        ]
        mask = [0 if cfg.mask_prompt else 1] * len(p_ids) + [1] * (len(s_ids) + 1)
        return [*p_ids, *s_ids, eos], mask
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [*ids, eos], [1] * (len(ids) + 1)


@dataclass
class _Packer:
    """Concatenates documents and emits full blocks; `flush` pads the last one."""

    block_size: int
    pad_id: int

    def __post_init__(self) -> None:
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.docs: list[str] = []

    def add(self, doc_id: str, ids: list[int], mask: list[int]) -> Iterator[tuple]:
        self.ids += ids
        self.mask += mask
        self.docs.append(doc_id)
        while len(self.ids) >= self.block_size:
            yield self._cut()

    def flush(self) -> Iterator[tuple]:
        if self.ids:
            pad = self.block_size - len(self.ids)
            self.ids += [self.pad_id] * pad
            self.mask += [0] * pad
            yield self._cut()

    def _cut(self) -> tuple[list[int], list[int], list[str]]:
        n = self.block_size
        block = (self.ids[:n], self.mask[:n], self.docs)
        self.ids, self.mask = self.ids[n:], self.mask[n:]
        self.docs = self.docs[-1:] if self.ids else []  # a document continuing into the next
        return block


@dataclass
class TokenizeResult:
    dataset: str
    refs: list[DatasetRef]  # the tokens versions made by this run (none if up to date)
    skipped: list[str]  # source versions already tokenized
    over_budget: dict[str, int] = field(default_factory=dict)  # source key -> rows left

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "refs": [r.to_dict() for r in self.refs],
            "skipped": self.skipped,
            "over_budget": self.over_budget,
        }


def tokenize(
    dataset: str, catalog: Catalog, teacher: ModelSpec, cfg: TokensConfig | None = None,
    gates: GatesConfig | None = None,
    *, flow_run_id: str | None = None, progress: bool = True,
) -> TokenizeResult:  # fmt: skip
    """Make a tokens version for each gated source version not yet (fully) tokenized.

    Raises GateFailed, before writing anything, when the run would mix block sizes or
    tokenizers with the dataset's other tokens snapshots."""
    cfg = cfg or TokensConfig()
    validate_name(dataset)
    stage = source_stage(catalog, dataset, cfg)
    sources = [v for v in catalog.versions(stage, dataset) if v.gate_passed]
    if not sources:
        raise TokenizeError(
            f"no {stage} snapshot of {dataset!r} has passed its gate; ingest (and curate) first"
        )
    done = progress_of(catalog, dataset)
    todo = [s for s in sources if not done.get(s.ref.key, (0, False))[1]]
    skipped = [s.ref.key for s in sources if s not in todo]
    if not todo:
        return TokenizeResult(dataset, [], skipped)
    tokenizer = load_tokenizer(teacher)
    if tokenizer.eos_token_id is None:
        raise TokenizeError(
            f"the tokenizer of {teacher.path} has no EOS token to separate documents"
        )
    tok_hash = tokenizer_sha256(tokenizer)
    planned = {
        "dataset": dataset, "block_size": cfg.block_size, "tokenizer_sha256": tok_hash,
        "target": f"tokens/{dataset} (this run: block size {cfg.block_size}, tokenizer of "
        f"{teacher.path})",
    }  # fmt: skip
    gate("tokens", None, catalog, gates, run=planned)  # before anything is written
    made, over = [], {}
    for src in todo:
        offset = done.get(src.ref.key, (0, False))[0]
        ref, left = _tokenize_version(
            src.ref, catalog, tokenizer, tok_hash, teacher, cfg, flow_run_id, progress, offset
        )
        made.append(ref)
        if left:
            over[src.ref.key] = left
            log.warning(
                "tokens %s: %d documents of %s are over tokens.max_documents=%d; they are "
                "left for the next run", ref.key, left, src.ref.key, cfg.max_documents,
            )  # fmt: skip
    return TokenizeResult(dataset, made, skipped, over)


def included(content_sha256: str, weight: float | None) -> bool:
    """Whether a down-weighted document (curate's `sample_weight` < 1) goes into the tokens:
    with probability `weight`, decided by its content hash (bits 32..63, independent of the
    split's bits 0..31). Deterministic, so reruns and refreshes agree; a document either
    trains at full weight or not at all, which keeps the packed blocks and the logit cache
    free of per-token weights."""
    if weight is None or weight >= 1.0:
        return True
    return int(content_sha256[8:16], 16) / 2**32 < weight


def _documents(
    src: DatasetRef, limit: int | None, counts: dict[str, int], offset: int = 0
) -> Iterator[tuple[str, str, str | None, str]]:
    """The kept rows of `src` after the first `offset`, in snapshot order, until `limit`
    documents were included. `counts` gets `source_total` (kept rows), `source_rows` (rows
    read, included or down-weighted out) and `downweighted_out`."""
    con = duckdb.connect()
    files = [str(f) for f in src.files()]
    cols = {r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [files]).fetchall()}
    where = "WHERE keep" if "keep" in cols else ""
    weight = "sample_weight" if "sample_weight" in cols else "NULL::DOUBLE"
    ((total,),) = con.execute(f"SELECT count(*) FROM read_parquet(?) {where}", [files]).fetchall()
    counts["source_total"] = int(total)
    sql = f"SELECT id, text, summary, content_sha256, {weight} FROM read_parquet(?) {where}"
    reader = con.sql(sql, params=[files]).to_arrow_reader(10_000)
    n = position = 0
    try:
        for batch in reader:
            for doc_id, text, summary, digest, w in zip(
                *(batch.column(i).to_pylist() for i in range(5)), strict=True
            ):
                position += 1
                if position <= offset:
                    continue
                if limit and n >= limit:
                    return
                counts["source_rows"] += 1
                if not included(digest, w):
                    counts["downweighted_out"] += 1
                    continue
                n += 1
                yield doc_id, text, summary, digest
    finally:
        con.close()


def _tokenize_version(
    src: DatasetRef,
    catalog: Catalog,
    tokenizer: Any,
    tok_hash: str,
    teacher: ModelSpec,
    cfg: TokensConfig,
    flow_run_id: str | None,
    progress: bool,
    offset: int = 0,
) -> tuple[DatasetRef, int]:
    """Tokenize `src` from its `offset`-th kept row (up to the budget); (the version, rows of
    `src` still left for a later run)."""
    schema = tokens_schema(cfg.block_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    packers = {s: _Packer(cfg.block_size, pad) for s in SPLITS}
    counts = {"documents": 0, "tokens": 0, "loss_tokens": 0}
    counts |= {f"{s}_{unit}": 0 for s in SPLITS for unit in ("documents", "blocks")}
    counts |= {"downweighted_out": 0}  # kept rows left out by their sample_weight
    counts |= {"source_offset": offset, "source_rows": 0, "source_total": 0}
    with catalog.writing():
        staged = catalog.stage_snapshot("tokens", src.name)
        rows: dict[str, list] = {name: [] for name in schema.names}

        def emit(split: str, block: tuple) -> None:
            ids, mask, docs = block
            rows["block"].append(sum(counts[f"{s}_blocks"] for s in SPLITS))
            rows["split"].append(split)
            rows["input_ids"].append(ids)
            rows["loss_mask"].append(mask)
            rows["doc_ids"].append(list(docs))
            counts[f"{split}_blocks"] += 1
            counts["loss_tokens"] += int(np.count_nonzero(mask))

        bar = tqdm(unit=" docs", desc=f"tokenize {src.key}", disable=not progress)
        with pq.ParquetWriter(staged.dir / "part-0.parquet", schema, compression="zstd") as out:
            for doc_id, text, summary, digest in _documents(src, cfg.max_documents, counts, offset):
                split = split_of(digest, cfg)
                ids, mask = render(text, summary, tokenizer, cfg)
                counts["documents"] += 1
                counts[f"{split}_documents"] += 1
                counts["tokens"] += len(ids)
                for block in packers[split].add(doc_id, ids, mask):
                    emit(split, block)
                if len(rows["block"]) >= 4096:
                    out.write_table(pa.table(rows, schema=schema))
                    rows = {name: [] for name in schema.names}
                bar.update()
            for split, packer in packers.items():
                for block in packer.flush():
                    emit(split, block)
            out.write_table(pa.table(rows, schema=schema))
        bar.close()
        if counts["documents"] == 0:
            raise TokenizeError(f"{src.key} has no documents to tokenize (all filtered out?)")
        counts["source_remaining"] = counts["source_total"] - offset - counts["source_rows"]
        counts["over_budget"] = counts["source_remaining"]
        meta = {
            "source": src.key,
            "teacher": teacher.path,
            "tokenizer_sha256": tok_hash,
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
            "block_size": cfg.block_size,
            "config": cfg.model_dump(),
            **counts,
        }
        with catalog.transaction() as tx:
            ref = tx.publish(staged, parent=src.key, flow_run_id=flow_run_id, meta=meta)
    log.info(
        "tokens %s: %d documents -> %d train + %d selection + %d test blocks of %d",
        ref.key, counts["documents"], counts["train_blocks"], counts["selection_blocks"],
        counts["test_blocks"], cfg.block_size,
    )  # fmt: skip
    return ref, counts["source_remaining"]


@task(name="tokenize-and-pack", task_run_name="tokenize {dataset}", cache_policy=NO_CACHE)
def tokenize_dataset(
    dataset: str, home: str, teacher: ModelSpec, cfg: TokensConfig, gates: GatesConfig | None = None
) -> TokenizeResult:
    """Pack each new gated snapshot of the dataset into token blocks (see `tokenize`)."""
    return tokenize(
        dataset, Catalog(Path(home)), teacher, cfg, gates, flow_run_id=current_flow_run_id()
    )
