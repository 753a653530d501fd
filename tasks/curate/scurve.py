"""The LSH S-curve and the band layout chosen from it (pure Python: the config validates with it).

P(candidate | J) = 1 - (1 - J^rows)^bands: the chance that a pair with Jaccard J shares at least
one of `bands` bands of `rows` signature values. `choose_bands(t, num_perm, recall)` takes the
largest rows r for which b = num_perm // r bands still give P(candidate | J = t) >= recall —
the steepest curve the permutation budget allows, so the fewest candidates below t at that
recall (every candidate is then verified, so a flatter curve costs time, not precision).
"""

from __future__ import annotations


def s_curve(j: float, bands: int, rows: int) -> float:
    """P(a pair with Jaccard j shares at least one band)."""
    return 1.0 - (1.0 - j**rows) ** bands


def choose_bands(threshold: float, num_perm: int = 128, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows) with P(candidate | J = threshold) >= recall in num_perm permutations: the
    largest rows that reach it, with every band the budget allows. 1.0 -> one band of all."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    if threshold >= 1.0:
        return 1, num_perm
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if s_curve(threshold, b, r) >= recall:
            return b, r
    raise ValueError(
        f"{num_perm} permutations cannot reach recall {recall} at Jaccard {threshold} "
        f"(1 row x {num_perm} bands gives {s_curve(threshold, num_perm, 1):.4f}); "
        "raise dedup.near.num_perm or lower dedup.near.recall"
    )


def s_curve_table(num_perm: int = 128, recall: float = 0.99) -> str:
    """Markdown: the chosen bands × rows per threshold and P(candidate) at some Jaccards."""
    js = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    lines = [
        "| t | bands x rows | " + " | ".join(f"J={j}" for j in js) + " |",
        "|" + "---|" * (len(js) + 2),
    ]
    for t in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0):
        b, r = choose_bands(t, num_perm, recall)
        cells = " | ".join(f"{s_curve(j, b, r):.3g}" for j in js)
        lines.append(f"| {t} | {b} x {r} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tasks.curate.scurve: the table in README.md
    print(s_curve_table())
