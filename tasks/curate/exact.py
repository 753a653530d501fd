"""Exact duplicates: the SHA-256 of the normalised text; the first occurrence is kept, across
snapshots too (an earlier snapshot's row always wins)."""

from __future__ import annotations

from typing import Any

from tasks.curate.config import ExactConfig
from tasks.curate.shards import DedupStats


def exact_key_sql(c: ExactConfig, col: str = "text") -> str:
    """SQL for the exact-dedup key of a text (sha256 of the normalised text)."""
    e = f"coalesce({col}, '')"
    if c.unicode_nfc:
        e = f"nfc_normalize({e})"
    if c.lowercase:
        e = f"lower({e})"
    if c.strip_punctuation:
        e = f"regexp_replace({e}, '[\\p{{P}}\\p{{S}}]+', '', 'g')"
    if c.collapse_whitespace:
        e = f"trim(regexp_replace({e}, '\\s+', ' ', 'g'))"
    return f"sha256({e})"


# Empty: no character other than ASCII whitespace (`\s` in RE2), as the native sketch decides.
EMPTY_SQL = "NOT coalesce(regexp_matches(text, '[^\\s]'), false)"


def exact_step(con: Any, cfg: ExactConfig, on: bool, stats: DedupStats) -> None:
    """Table `ex(doc, empty, exact_hash, dup_doc, exact_dup_of)` over `work`: empty rows, and
    for each duplicate the first earlier row with its content (`prior` first, then `work`).
    With `on` false only emptiness is decided."""
    key = exact_key_sql(cfg) if on else "NULL::VARCHAR"
    con.execute(
        f"CREATE TEMP TABLE n AS SELECT doc, id, {key} AS h, {EMPTY_SQL} AS empty FROM work"
    )
    con.execute(
        f"""
        CREATE TEMP TABLE ex AS
        WITH f AS (SELECT h, min(doc) AS fdoc, arg_min(id, doc) AS fid FROM n
              WHERE NOT empty GROUP BY h),
        p AS (SELECT h, min(doc) AS pdoc, arg_min(id, doc) AS pid FROM
                (SELECT doc, id, {key} AS h FROM prior WHERE NOT {EMPTY_SQL}) GROUP BY h)
        SELECT n.doc, n.empty, CASE WHEN {on} THEN n.h END AS exact_hash,
               CASE WHEN NOT {on} OR n.empty THEN NULL
                    WHEN p.pid IS NOT NULL THEN p.pdoc
                    WHEN n.doc <> f.fdoc THEN f.fdoc END AS dup_doc,
               CASE WHEN NOT {on} OR n.empty THEN NULL
                    WHEN p.pid IS NOT NULL THEN p.pid
                    WHEN n.doc <> f.fdoc THEN f.fid END AS exact_dup_of
        FROM n LEFT JOIN f USING (h) LEFT JOIN p USING (h)
        """
    )
    stats.empty, stats.exact_dups = con.execute(
        "SELECT count(*) FILTER (empty), count(exact_dup_of) FROM ex"
    ).fetchall()[0]
