"""Rank statistics shared by the heads' validation and the selection checks."""

from __future__ import annotations

import numpy as np
from scipy import stats


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """scipy's Spearman rank correlation (average ranks for ties), as a float; nan for fewer than 3
    rows or a constant input, without scipy's warning: a check that cannot be made is reported as
    such by its caller, not as a warning in the middle of a run."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)
