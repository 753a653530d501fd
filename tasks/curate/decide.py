"""Decide: dedup decisions + score thresholds -> (keep, reason, sample_weight) per row, in one
DuckDB statement (the first reason wins; the machine-text share cap comes last)."""

from __future__ import annotations

from typing import Any

from tasks.curate.config import DedupConfig
from warehouse.sql import sql_str


def decision_sql(cfg: DedupConfig, filters: list[str]) -> tuple[str, str]:
    """SQL for (keep, reason) over decisions `d` and scores `s`, thresholds applied after
    the dedup decisions (the first reason wins). Under `mgt.action: downweight` a machine-like
    row is not rejected here (see `decide`)."""
    conds = []
    mgt_drop = cfg.mgt.action == "drop"
    if "mgt" in filters and cfg.mgt.threshold is not None and mgt_drop:
        conds.append((f"s.mgt_score > {float(cfg.mgt.threshold)!r}", "machine_generated"))
    if "factuality" in filters and cfg.factuality.threshold is not None:
        conds.append((f"s.factuality_score < {float(cfg.factuality.threshold)!r}", "unfaithful"))
    reason = "d.reason"
    if conds:
        whens = " ".join(f"WHEN {c} THEN '{r}'" for c, r in conds)
        reason = f"CASE WHEN d.reason IS NOT NULL THEN d.reason {whens} END"
    return f"({reason}) IS NULL", reason


def decide(con: Any, decisions: str, scores: str, cfg: DedupConfig, filters: list[str]) -> str:
    """Write the final (doc, keep, reason, sample_weight) of every row to `final` in `con`
    and return the table's name.

    After the dedup decisions and score thresholds (`decision_sql`): the machine-text share
    cap — when more than `mgt.max_share` of the kept rows are machine-like (score above the
    threshold), the highest-scoring ones are dropped (`mgt_share_cap`) until the share fits:
    x rows, the least x with (M - x) / (K - x) <= s for K kept and M machine-like rows. Then
    `sample_weight`: `mgt.weight` for a kept machine-like row under action=downweight, else 1.
    """
    _, reason = decision_sql(cfg, filters)
    m = cfg.mgt
    scored = "mgt" in filters and m.threshold is not None
    machine = f"coalesce(s.mgt_score > {float(m.threshold)!r}, false)" if scored else "false"
    cap = "0"
    if scored and m.max_share is not None and m.max_share < 1.0:
        s = float(m.max_share)
        cap = f"greatest(0, ceil((n_machine - {s!r} * n_kept) / (1 - {s!r})))"
    weight = float(m.weight) if m.action == "downweight" else 1.0
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE final AS
        WITH base AS (
          SELECT d.doc, {reason} AS reason0, s.mgt_score, {machine} AS machine
          FROM read_parquet({sql_str(decisions)}) d
          JOIN read_parquet({sql_str(scores)}) s USING (doc)
        ), ranked AS (
          SELECT *,
                 row_number() OVER (PARTITION BY reason0 IS NULL AND machine
                                    ORDER BY mgt_score DESC, doc) AS rank,
                 count(*) FILTER (reason0 IS NULL) OVER () AS n_kept,
                 count(*) FILTER (reason0 IS NULL AND machine) OVER () AS n_machine
          FROM base
        ), capped AS (
          SELECT doc, machine,
                 CASE WHEN reason0 IS NULL AND machine AND rank <= {cap}
                      THEN 'mgt_share_cap' ELSE reason0 END AS reason
          FROM ranked
        )
        SELECT doc, reason IS NULL AS keep, reason,
               CASE WHEN reason IS NULL AND machine THEN {weight!r} ELSE 1.0 END
                 AS sample_weight
        FROM capped
        """
    )
    return "final"
