"""SQL literals for the few places DuckDB cannot take a parameter (COPY targets, file lists in
table functions inside larger statements). Only for paths we build ourselves."""

from __future__ import annotations


def sql_str(s: str) -> str:
    """A single-quoted SQL string literal, quotes doubled."""
    return "'" + s.replace("'", "''") + "'"


def sql_list(items: list[str]) -> str:
    """A SQL list literal of strings: ['a', 'b']."""
    return "[" + ", ".join(sql_str(s) for s in items) + "]"
