"""What a comparison with random needs beside the scores: the training tokens of each cell, how
much two seeds of a method agree on, and choice accuracy where the learner is above chance.

Why: a method that picks shorter rows trains on fewer tokens, so "method minus random" mixes the
choice of rows with the amount of training (docs/EVIDENCE.md); and a method whose reruns share
60% of their rows gives a user 40% different data on the next run. Both belong in the same
results file as the scores, made from the same cells.
"""

from __future__ import annotations

from itertools import combinations
from statistics import fmean
from typing import Any

from daar.experiment.compare import comparison_markdown, comparisons

# Choice tasks scored by accuracy too (nll mode records it for every item): chance is 1/4 on both.
CHOICE_TASKS = ("hellaswag", "mmlu")


def selection_overlap(a: list[str], b: list[str]) -> float:
    """Rows two selections share, over their mean size (the share of either one for equal sizes)."""
    if not a and not b:
        return 1.0
    return len(set(a) & set(b)) / ((len(a) + len(b)) / 2)


def seed_overlaps(cells: list[dict[str, Any]]) -> dict[tuple[str, float], list[float]]:
    """Per method and ratio: the overlap of every pair of its seeds' selections."""
    by_method: dict[tuple[str, float], list[list[str]]] = {}
    for cell in cells:
        ids = cell.get("selection", {}).get("ids")
        if ids is not None and cell.get("ratio") is not None:
            by_method.setdefault((cell["method"], cell["ratio"]), []).append(ids)
    return {key: [selection_overlap(a, b) for a, b in combinations(group, 2)] for key, group in by_method.items()}


def evidence_markdown(cells: list[dict[str, Any]], tasks: list[str], titles: dict[str, str]) -> str:
    """Tokens and overlap per method, then choice accuracy against random (if the tasks include any)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for cell in cells:
        if cell.get("ratio") is not None:
            groups.setdefault((cell["method"], cell["ratio"]), []).append(cell)
    if not groups:
        return ""
    overlaps = seed_overlaps(cells)
    lines = ["", "## Training tokens and agreement between seeds", ""]
    lines.append(
        "Tokens: what one epoch of tuning read (prompt and response), mean over seeds (min-max). Overlap: rows two "
        "seeds' selections share over their mean size, mean over pairs of seeds (min-max)."
    )
    lines += ["", "| Method | Ratio | Seeds | Rows | Tokens | Overlap between seeds |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for (method, ratio), group in groups.items():
        rows = [c["selection"]["rows"] for c in group if c.get("selection")]
        tokens = [c["tune"]["tokens"] for c in group if c.get("tune", {}).get("tokens") is not None]
        pairs = overlaps.get((method, ratio), [])
        lines.append(
            f"| {method} | {ratio:g} | {len(group)} | {_spread(rows, '.0f')} | {_spread(tokens, ',.0f')} | "
            f"{_spread(pairs, '.3f')} |"
        )
    choice = [t for t in tasks if t in CHOICE_TASKS]
    if choice:
        found = comparisons(cells, choice, metrics={t: "acc" for t in choice})
        lines.append(comparison_markdown(found, choice, "acc", titles, what=", choice accuracy (points)").rstrip())
    return "\n".join(lines) + "\n"


def _spread(values: list[float], spec: str) -> str:
    if not values:
        return "–"
    if len(values) == 1 or min(values) == max(values):
        return format(values[0], spec)
    return f"{format(fmean(values), spec)} ({format(min(values), spec)}-{format(max(values), spec)})"
