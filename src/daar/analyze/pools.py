"""Contrastive pools (DaaR paper, section 3): per domain, a window of rows ranked by diversity.

Rank 0 is the MOST diverse row of its domain: for `inter`, the row with the highest summed cosine
similarity to the other domains' centroids; for `intra`, the row with the lowest cosine similarity
to its own centroid. The paper's "high" pool is then window 0:2000 and its "low" pool 8000:10000
of 10,000 rows per domain. Ties keep file order, so a window is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from daar.analyze.diversity import row_measures
from daar.errors import UserError

By = Literal["inter", "intra"]


@dataclass(frozen=True)
class Window:
    """[lower, upper) of each domain's ranking: row counts, or fractions of each domain's size."""

    lower: float
    upper: float
    fractional: bool

    def bounds(self, size: int) -> tuple[int, int]:
        if self.fractional:
            return round(self.lower * size), round(self.upper * size)
        return int(self.lower), min(int(self.upper), size)

    def __str__(self) -> str:
        return f"{self.lower:g}:{self.upper:g}"


def parse_window(text: str) -> Window:
    """'0:2000' (ranks) or '0.8:1.0' / '80%:100%' (fractions of each domain). Raises ValueError."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise UserError(f"window must look like LOWER:UPPER (e.g. 0:2000 or 0.8:1.0), got {text!r}")
    fractional = any("." in p or "%" in p for p in parts)
    try:
        values = [float(p.strip().rstrip("%")) / (100 if p.strip().endswith("%") else 1) for p in parts]
    except ValueError as err:
        raise UserError(f"window bounds must be numbers, got {text!r}") from err
    lower, upper = values
    if not fractional and not all(v.is_integer() for v in values):
        raise UserError(f"window bounds must be whole ranks or fractions, got {text!r}")
    if lower < 0 or upper <= lower or (fractional and upper > 1):
        raise UserError(f"window needs 0 <= LOWER < UPPER{' <= 1' if fractional else ''}, got {text!r}")
    return Window(lower, upper, fractional)


def diversity_score(x: np.ndarray, labels: np.ndarray, by: By, k: int | None = None) -> np.ndarray:
    """Per row, higher = more diverse by the chosen measure (inter as is, intra negated)."""
    rows = row_measures(x, labels, k)
    if by == "inter":
        return rows.inter
    if by == "intra":
        return -rows.intra
    raise UserError(f"--by must be 'inter' or 'intra', got {by!r}")


def diversity_ranks(x: np.ndarray, labels: np.ndarray, by: By, k: int | None = None) -> np.ndarray:
    """Per row, its 0-based rank within its own domain (0 = most diverse)."""
    score = diversity_score(x, labels, by, k)
    labels = np.asarray(labels, dtype=np.int64)
    ranks = np.empty(len(labels), dtype=np.int64)
    for j in np.unique(labels):
        rows = np.flatnonzero(labels == j)
        order = rows[np.lexsort((rows, -score[rows]))]
        ranks[order] = np.arange(len(order))
    return ranks


def contrastive_pool(x: np.ndarray, labels: np.ndarray, by: By, window: Window, k: int | None = None) -> np.ndarray:
    """Sorted indices of the rows whose within-domain rank falls in the window."""
    ranks = diversity_ranks(x, labels, by, k)
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.zeros(len(labels), dtype=bool)
    for j in np.unique(labels):
        rows = labels == j
        lower, upper = window.bounds(int(rows.sum()))
        keep |= rows & (ranks >= lower) & (ranks < upper)
    return np.flatnonzero(keep)
