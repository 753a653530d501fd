"""What each stage's gate checks: batches of data and the GX expectations on them.

A suite is a list of `Check`s: a named pandas DataFrame and the expectations it must meet. The
frames are small projections computed by DuckDB (ids, hashes, lengths), not the full text, so
validating a million-row snapshot stays cheap in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_quality.gate_config import GatesConfig

if TYPE_CHECKING:  # duckdb and the catalog load when a suite runs: the config imports this
    import pandas as pd

    from warehouse import Catalog, DatasetRef


@dataclass
class Check:
    batch: str  # a name for the data being checked, shown in reports
    frame: pd.DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation
    id_column: str | None = "id"  # column that names failing rows in reports


SuiteBuilder = Callable[
    ["DatasetRef | None", "Catalog", GatesConfig, "dict[str, Any] | None"], list[Check]
]


def raw_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """Raw snapshot: ids unique, text non-empty and within length bounds, content unique;
    the ingest run that made it: quarantined share below the maximum."""
    import duckdb
    import great_expectations.expectations as gxe

    c = cfg.raw
    checks: list[Check] = []
    if ref is not None:
        files = [str(f) for f in ref.files()]
        frame = (
            duckdb.connect()
            .execute(
                "SELECT id, content_sha256, length(text) AS text_chars, "
                "length(trim(text)) AS trimmed_chars FROM read_parquet(?)",
                [files],
            )
            .df()
        )
        checks.append(
            Check(
                "snapshot",
                frame,
                [
                    gxe.ExpectColumnValuesToNotBeNull(column="id"),
                    gxe.ExpectColumnValuesToBeUnique(column="id"),
                    gxe.ExpectColumnValuesToNotBeNull(column="text_chars"),
                    gxe.ExpectColumnValuesToBeBetween(
                        column="trimmed_chars", min_value=max(1, c.min_chars)
                    ),
                    gxe.ExpectColumnValuesToBeBetween(column="text_chars", max_value=c.max_chars),
                    gxe.ExpectColumnValuesToBeUnique(column="content_sha256"),
                ],
            )
        )
    if run is None and ref is not None:
        runs = [r for r in catalog.ingest_runs(ref.name) if r["version"] == ref.version]
        run = runs[-1] if runs else None
    if run is not None:
        import pandas as pd

        share = run["quarantined"] / run["rows_in"] if run["rows_in"] else 0.0
        frame = pd.DataFrame(
            [{"run_id": run["run_id"], "rows_in": run["rows_in"], "quarantined_share": share}]
        )
        checks.append(
            Check(
                "ingest_run",
                frame,
                [
                    gxe.ExpectColumnValuesToBeBetween(
                        column="quarantined_share", max_value=c.max_quarantined_share
                    )
                ],
                id_column="run_id",
            )
        )
    return checks


SUITES: dict[str, SuiteBuilder] = {"raw": raw_suite}


def _compat(
    catalog: Catalog,
    stage: str,
    dataset: str,
    planned: dict[str, Any],
    columns: tuple[str, ...],
    exclude: str | None,
    same: dict[str, Any] | None = None,
) -> Check:
    """The other gated versions of `stage`/`dataset` (those whose meta matches `same`) must
    agree with `planned` on `columns`: what a new version would be mixed with downstream."""
    import great_expectations.expectations as gxe
    import pandas as pd

    rows = [
        {"snapshot": v.ref.key, **{c: _short(v.meta.get(c)) for c in columns}}
        for v in catalog.versions(stage, dataset)
        if v.gate_passed and v.ref.key != exclude
        and all(v.meta.get(k) == x for k, x in (same or {}).items())
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["snapshot", *columns]).astype(object)
    return Check(
        "compatibility",
        frame,
        [
            gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[_short(planned[c])])
            for c in columns
        ],
        id_column="snapshot",
    )


def _short(value: Any) -> Any:
    """Hashes shortened for reports (12 hex digits tell tokenizers apart)."""
    return value[:12] if isinstance(value, str) and len(value) == 64 else value


def tokens_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """Tokens: every id inside the tokenizer's vocabulary, full blocks, some training blocks,
    some tokens that carry loss; and the same block size and tokenizer as the dataset's other
    tokens snapshots (they are trained on together). Without a snapshot (`run` holds what a
    run plans to write: dataset, block_size, tokenizer_sha256) only the latter, before
    anything is written."""
    import great_expectations.expectations as gxe
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    columns = ("block_size", "tokenizer_sha256")
    if ref is None:
        assert run is not None
        return [_compat(catalog, "tokens", run["dataset"], run, columns, None)]
    meta = catalog.get(ref.stage, ref.name, ref.version).meta
    table = pq.read_table(ref.files(), partitioning=None)
    width = int(meta["block_size"])
    ids = np.asarray(table.column("input_ids").combine_chunks().flatten()).reshape(-1, width)
    mask = np.asarray(table.column("loss_mask").combine_chunks().flatten()).reshape(-1, width)
    blocks = pd.DataFrame(
        {
            "block": table.column("block").to_numpy(),
            "split": table.column("split").to_pylist(),
            "min_id": ids.min(1) if len(ids) else [],
            "max_id": ids.max(1) if len(ids) else [],
            "loss_tokens": mask.sum(1) if len(ids) else [],
        }
    )
    totals = pd.DataFrame(
        [
            {
                "snapshot": ref.key,
                "train_blocks": int((blocks["split"] == "train").sum()),
                "loss_tokens": int(blocks["loss_tokens"].sum()),
            }
        ]
    )
    return [
        Check(
            "blocks",
            blocks,
            [
                gxe.ExpectColumnValuesToBeBetween(column="min_id", min_value=0),
                gxe.ExpectColumnValuesToBeBetween(
                    column="max_id", max_value=int(meta["vocab_size"]) - 1
                ),
                gxe.ExpectColumnValuesToBeInSet(
                    column="split", value_set=["train", "selection", "test", "validation"]
                ),
                gxe.ExpectColumnValuesToBeUnique(column="block"),
            ],
            id_column="block",
        ),
        Check(
            "totals",
            totals,
            [
                gxe.ExpectColumnValuesToBeBetween(column="train_blocks", min_value=1),
                gxe.ExpectColumnValuesToBeBetween(column="loss_tokens", min_value=1),
            ],
            id_column="snapshot",
        ),
        _compat(catalog, "tokens", ref.name, meta, columns, ref.key),
    ]


def logits_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """Logit cache: every position covered, ids inside the vocabulary, values finite, mass per
    position at most 1, and every shard's files matching their checksums; and the teacher the
    same model (vocabulary, tokenizer) as in the dataset's other caches from that teacher.
    Without a snapshot (`run`: dataset, teacher, vocab_size, tokenizer_sha256 of a planned
    cache) only the latter, before anything is written."""
    import great_expectations.expectations as gxe
    import numpy as np
    import pandas as pd

    from models.logit_cache import LogitCacheError, read_manifest, read_shard, verify_shard

    columns = ("vocab_size", "tokenizer_sha256")
    if ref is None:
        assert run is not None
        same = {"teacher": run["teacher"]}
        return [_compat(catalog, "logits", run["dataset"], run, columns, None, same)]
    root = Path(ref.path)
    manifest = read_manifest(root)
    # the cache's shards, and those of its teacher-summary blocks (tasks/logits/summaries.py)
    folders = [("", root, manifest)]
    if manifest.get("summaries"):
        folders.append(("summaries/", root / "summaries", read_manifest(root / "summaries")))
    rows, totals_rows = [], []
    for prefix, folder, m in folders:
        per = m["shard_blocks"]
        counted = 0
        for index in range(-(-m["blocks"] // per)):  # every shard the blocks need
            expected = min(per, m["blocks"] - index * per) * m["block_size"]
            row = {"shard": f"{prefix}{index}", "positions": 0, "expected_positions": expected,
                   "max_id": 0}  # fmt: skip
            try:
                targets = read_shard(folder, index, m)
            except LogitCacheError:  # missing: fails coverage, finiteness and checksums
                rows.append(row | {"finite": False, "max_mass": 0.0, "checksums_match": False})
                continue
            mass = targets.mass()
            values = np.asarray(targets.values, dtype=np.float32)
            counted += targets.positions
            rows.append(
                row
                | {
                    "positions": targets.positions,
                    "max_id": int(np.max(targets.ids)) if targets.ids.size else 0,
                    "finite": bool(np.isfinite(values).all() and np.isfinite(mass).all()),
                    "max_mass": float(mass.max()) if mass.size else 0.0,
                    "checksums_match": verify_shard(folder, index),
                }
            )
        name = f"{ref.key} {prefix}".strip()
        totals_rows.append({"snapshot": name, "positions": counted, "expected": m["positions"]})
    shards = pd.DataFrame(rows)
    totals = pd.DataFrame(totals_rows)
    tolerance = cfg.logits.mass_tolerance
    return [
        Check(
            "shards",
            shards,
            [
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="positions", column_B="expected_positions"
                ),
                gxe.ExpectColumnValuesToBeBetween(
                    column="max_id", max_value=int(manifest["vocab_size"]) - 1
                ),
                gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
                gxe.ExpectColumnValuesToBeBetween(column="max_mass", max_value=1.0 + tolerance),
                gxe.ExpectColumnValuesToBeInSet(column="checksums_match", value_set=[True]),
            ],
            id_column="shard",
        ),
        Check(
            "totals",
            totals,
            [gxe.ExpectColumnPairValuesToBeEqual(column_A="positions", column_B="expected")],
            id_column="snapshot",
        ),
        _compat(catalog, "logits", ref.name, manifest, columns, ref.key,
                {"teacher": manifest["teacher"]}),
    ]  # fmt: skip


SUITES["tokens"] = tokens_suite
SUITES["logits"] = logits_suite


CURATED_REASONS = [
    "empty_text",
    "exact_dup",
    "quality",
    "near_dup",
    "semantic_dup",
    "machine_generated",
    "unfaithful",
    "mgt_share_cap",
]


def curated_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """Curated snapshot: every row has a consistent decision; no two kept rows (across the
    dataset's curated versions) share an exact-dedup hash; the kept share lies in range; no
    near-duplicate cluster holds an implausible share of the rows."""
    import duckdb
    import great_expectations.expectations as gxe
    import pandas as pd

    if ref is None:
        return []
    c = cfg.curated
    files = [str(f) for f in ref.files()]
    earlier = [str(f) for f in catalog.snapshot_paths("curated", ref.name, up_to=ref.version - 1)]
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT id, doc_key, keep, reason, (keep = (reason IS NULL)) AS consistent "
            "FROM read_parquet(?)",
            [files],
        ).df()
        kept = con.execute(
            "SELECT id, exact_hash FROM read_parquet(?, union_by_name = true) "
            "WHERE keep AND exact_hash IS NOT NULL",
            [files + earlier],
        ).df()
        n, n_kept, biggest = con.execute(
            "SELECT count(*), count(*) FILTER (keep), "
            "coalesce(max(size), 0) FROM read_parquet(?) LEFT JOIN "
            "(SELECT near_dup_cluster, count(*) AS size FROM read_parquet(?) "
            " WHERE near_dup_cluster IS NOT NULL GROUP BY ALL) USING (near_dup_cluster)",
            [files, files],
        ).fetchall()[0]
    finally:
        con.close()
    applies = n >= c.min_rows_for_shares
    shares = pd.DataFrame(
        [
            {
                "snapshot": ref.key,
                "rows": n,
                "kept_share": n_kept / n if n else 1.0,
                "largest_cluster_share": biggest / n if n else 0.0,
            }
        ]
    )
    return [
        Check(
            "decisions",
            rows,
            [
                gxe.ExpectColumnValuesToNotBeNull(column="id"),
                gxe.ExpectColumnValuesToNotBeNull(column="keep"),
                gxe.ExpectColumnValuesToBeUnique(column="doc_key"),
                gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=CURATED_REASONS),
                gxe.ExpectColumnValuesToBeInSet(column="consistent", value_set=[True]),
            ],
        ),
        Check("kept", kept, [gxe.ExpectColumnValuesToBeUnique(column="exact_hash")]),
        Check(
            "shares",
            shares,
            [
                gxe.ExpectColumnValuesToBeBetween(
                    column="kept_share",
                    min_value=c.min_kept_share if applies else 0.0,
                    max_value=c.max_kept_share if applies else 1.0,
                ),
                gxe.ExpectColumnValuesToBeBetween(
                    column="largest_cluster_share",
                    max_value=c.max_cluster_share if applies else 1.0,
                ),
            ],
            id_column="snapshot",
        ),
    ]


SUITES["curated"] = curated_suite


def _model_checks(
    stage: str, run: dict[str, Any], columns: dict[str, Any], expectations: list[Any]
) -> list[Check]:
    """The check of a registered model (passed as `run`: its registry key and metrics): every
    metric finite, then `expectations` on `columns` (one row, the model's)."""
    import math

    import great_expectations.expectations as gxe
    import pandas as pd

    metrics = run["metrics"]
    numbers = [v for v in metrics.values() if isinstance(v, int | float) and v is not None]
    finite = all(math.isfinite(v) for v in numbers)
    frame = pd.DataFrame([{"model": run["target"], "metrics_finite": finite, **columns}])
    finite_check = gxe.ExpectColumnValuesToBeInSet(column="metrics_finite", value_set=[True])
    return [Check(stage, frame, [finite_check, *expectations], id_column="model")]


def student_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """A trained student (passed as `run`: its registry key, metrics and NaN weight count):
    every metric finite, no NaN or infinite weight, held-out perplexity within
    `gates.student.max_ppl_ratio` of the teacher's."""
    import great_expectations.expectations as gxe

    assert run is not None
    columns = {
        "bad_weights": int(run["bad_weights"]),
        "ppl_ratio": float(run["metrics"]["ppl_ratio"]),
    }
    return _model_checks(
        "student",
        run,
        columns,
        [
            gxe.ExpectColumnValuesToBeBetween(column="bad_weights", max_value=0),
            gxe.ExpectColumnValuesToBeBetween(
                column="ppl_ratio", min_value=0.0, max_value=cfg.student.max_ppl_ratio
            ),
        ],
    )


SUITES["student"] = student_suite


def quantized_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """A quantized model (passed as `run`: its registry key and metrics): every metric finite,
    its quantized weights and its folder on disk smaller than the fp32 weights, held-out
    perplexity within `gates.quantized.max_ppl_delta_8bit` (8 bits) / `_4bit` (fewer) percent
    of its fp32 parent's."""
    import great_expectations.expectations as gxe

    assert run is not None
    metrics = run["metrics"]
    limit = (
        cfg.quantized.max_ppl_delta_4bit
        if metrics["bits"] < 8
        else cfg.quantized.max_ppl_delta_8bit
    )
    columns = {
        "weight_bytes_ratio": float(metrics["weight_bytes_ratio"]),
        "disk_bytes_ratio": float(metrics["disk_bytes_ratio"]),
        "ppl_delta_pct": float(metrics["ppl_delta_pct"]),
    }
    return _model_checks(
        "quantized",
        run,
        columns,
        [
            gxe.ExpectColumnValuesToBeBetween(
                column="weight_bytes_ratio", min_value=0.0, max_value=1.0, strict_max=True
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="disk_bytes_ratio", min_value=0.0, max_value=1.0, strict_max=True
            ),
            gxe.ExpectColumnValuesToBeBetween(column="ppl_delta_pct", max_value=limit),
        ],
    )


SUITES["quantized"] = quantized_suite


def factuality_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """A trained factuality model (passed as `run`: its registry key and metrics): every
    metric finite, AUROC on synthetic pairs of held-out documents at least
    `gates.factuality.min_auroc`."""
    import great_expectations.expectations as gxe

    assert run is not None
    columns = {"gate_auroc": float(run["metrics"]["gate_auroc"])}
    return _model_checks(
        "factuality",
        run,
        columns,
        [
            gxe.ExpectColumnValuesToBeBetween(
                column="gate_auroc", min_value=cfg.factuality.min_auroc, max_value=1.0
            )
        ],
    )


SUITES["factuality"] = factuality_suite
