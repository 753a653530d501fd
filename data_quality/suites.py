"""What each stage's gate checks: batches of data and the GX expectations on them.

A suite is a list of `Check`s: a named pandas DataFrame and the expectations it must meet. The
frames are small projections computed by DuckDB (ids, hashes, lengths), not the full text, so
validating a million-row snapshot stays cheap in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from data_quality.gate_config import GatesConfig
from warehouse import Catalog, DatasetRef

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Check:
    batch: str  # a name for the data being checked, shown in reports
    frame: pd.DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation
    id_column: str | None = "id"  # column that names failing rows in reports


SuiteBuilder = Callable[
    [DatasetRef | None, Catalog, GatesConfig, dict[str, Any] | None], list[Check]
]


def raw_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """Raw snapshot: ids unique, text non-empty and within length bounds, content unique;
    the ingest run that made it: quarantined share below the maximum."""
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


CURATED_REASONS = ["empty_text", "exact_dup", "near_dup", "semantic_dup"]


def curated_suite(
    ref: DatasetRef | None, catalog: Catalog, cfg: GatesConfig, run: dict[str, Any] | None
) -> list[Check]:
    """Curated snapshot: every row has a consistent decision; no two kept rows (across the
    dataset's curated versions) share an exact-dedup hash; the kept share lies in range; no
    near-duplicate cluster holds an implausible share of the rows."""
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


SUITES: dict[str, SuiteBuilder] = {"raw": raw_suite, "curated": curated_suite}
