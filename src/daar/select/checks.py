"""Warnings a user sees without any domain labels: is this selection lopsided, or a length filter?

Both checks use only what the selector itself produced. Thresholds, and why (docs/BALANCE.md):

- one pseudo-domain holds more than half of the selection (three quarters when K = 2, where one of
  two always holds half): with K >= 3 domains a balanced pick gives each 1/K; over 1/2 means the
  others share less than half between them, the one-domain collapse of the paper's `overall` on
  the shared pool. Not for `customized`, which aims at one domain on purpose;
- |Spearman(reward, characters of the row)| above 0.3: the reward then ranks rows largely by
  length, which a "longest rows" baseline does for free (measured on the shared pool with
  SmolLM2-135M: -0.24 to -0.41).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daar.utils.stats import spearman

DOMINANT_SHARE = 0.5
DOMINANT_SHARE_TWO = 0.75
LENGTH_SPEARMAN = 0.3


def selection_warnings(
    scores: dict[str, np.ndarray], mask: np.ndarray, chars: np.ndarray, strategy: str, shares: str = "proportional"
) -> list[dict[str, Any]]:
    """Plain-language warnings about one selection (empty when nothing looks wrong)."""
    found: list[dict[str, Any]] = []
    if "pseudo_domain" in scores and mask.any() and strategy != "customized":
        group = np.asarray(scores["pseudo_domain"]).astype(str)
        names, counts = np.unique(group[mask], return_counts=True)
        top = int(np.argmax(counts))
        share = float(counts[top] / mask.sum())
        pool_share = float((group == names[top]).mean())
        threshold = DOMINANT_SHARE_TWO if len(np.unique(group)) == 2 else DOMINANT_SHARE
        if share > threshold:
            if strategy == "overall":
                hint = "--strategy balanced keeps each pseudo-domain's share of the pool"
            elif shares == "proportional" and pool_share > threshold:
                hint = (
                    f"the pool itself is {pool_share:.0%} that pseudo-domain and the selection keeps its share; "
                    "--shares equal gives every pseudo-domain the same budget"
                )
            else:
                hint = "the other pseudo-domains hold too few rows to fill their shares"
            found.append(
                {
                    "kind": "dominant_pseudo_domain",
                    "value": round(share, 4),
                    "threshold": threshold,
                    "message": f"pseudo-domain '{names[top]}' holds {share:.0%} of the selection ({hint}). If the "
                    "pseudo-domains look wrong, give examples per domain (--examples-file) or probe with a larger "
                    "--model",
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
                    "the selection is then close to a length filter: compare it with --method random"
                    + (" and --method output_length" if rho > 0 else "")
                    + " before trusting it",
                }
            )
    return found
