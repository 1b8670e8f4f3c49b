"""Warnings a user sees without any domain labels: is this selection lopsided, or a length filter?

Both checks use only what the selector itself produced. Thresholds, and why (docs/BALANCE.md):

- one pseudo-domain holds more than half of the selection: with K >= 3 domains a balanced pick
  gives each 1/K; over 1/2 means the others share less than half between them, the one-domain
  collapse that made the paper's `overall` lose to random rows on the shared pool;
- |Spearman(reward, characters of the row)| above 0.3: the reward then ranks rows largely by
  length, which a "longest rows" baseline does for free (measured on the shared pool with
  SmolLM2-135M: -0.24 to -0.41).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DOMINANT_SHARE = 0.5
LENGTH_SPEARMAN = 0.3


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties); nan for fewer than 3 rows or a constant input."""
    if len(a) < 3:
        return float("nan")
    ra, rb = (_ranks(np.asarray(x, dtype=np.float64)) for x in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def selection_warnings(
    scores: dict[str, np.ndarray], mask: np.ndarray, chars: np.ndarray, strategy: str
) -> list[dict[str, Any]]:
    """Plain-language warnings about one selection (empty when nothing looks wrong)."""
    found: list[dict[str, Any]] = []
    if "pseudo_domain" in scores and mask.any():
        groups, counts = np.unique(np.asarray(scores["pseudo_domain"])[mask].astype(str), return_counts=True)
        top = int(np.argmax(counts))
        share = float(counts[top] / mask.sum())
        if share > DOMINANT_SHARE:
            hint = (
                "use --strategy balanced (equal shares per pseudo-domain)"
                if strategy != "balanced"
                else "the other pseudo-domains are too small to fill their shares; check the seeds (--seeds-file)"
            )
            found.append(
                {
                    "kind": "dominant_pseudo_domain",
                    "value": round(share, 4),
                    "threshold": DOMINANT_SHARE,
                    "message": f"pseudo-domain '{groups[top]}' holds {share:.0%} of the selection; {hint}, "
                    "or give seeds per domain with --seeds-file, or probe with a larger --model",
                }
            )
    if "reward" in scores and len(chars) >= 3:
        rho = spearman(np.asarray(scores["reward"]), chars)
        if np.isfinite(rho) and abs(rho) > LENGTH_SPEARMAN:
            direction = "shorter" if rho < 0 else "longer"
            found.append(
                {
                    "kind": "reward_follows_length",
                    "value": round(rho, 4),
                    "threshold": LENGTH_SPEARMAN,
                    "message": f"the reward favours {direction} rows (Spearman {rho:+.2f} with row length); "
                    "the selection is then close to a length filter. Compare with --method random or "
                    f"--method {'output_length' if rho > 0 else 'kcenter'} before trusting it",
                }
            )
    return found
