"""`stratified`: DaaR's pseudo-domain quotas with random rows inside them."""

from __future__ import annotations

import numpy as np

from daar.select.base import Context, Scores, register
from daar.select.daar import DaarSelector


def row_uniform(seed: int, positions: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per row from (seed, position) alone (SplitMix64), so that a row
    draws the same number whether the pool is scored whole or block by block."""
    with np.errstate(over="ignore"):
        key = _splitmix(np.array([seed], dtype=np.uint64))[0]
        z = _splitmix(np.asarray(positions, dtype=np.uint64) + key)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _splitmix(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@register
class StratifiedSelector(DaarSelector):
    """DaaR's pseudo-domain quotas with random rows inside each: `balanced` with the reward
    replaced by a seeded uniform draw per row (`overall` makes it plain random).

    Why: DaaR does two things, splitting the budget over the probe's pseudo-domains and ranking
    by the diversity reward inside each. Comparing daar, stratified and random tells which part
    helps or hurts (docs/EVIDENCE.md). The probe is trained exactly as DaaR's (same seed, same
    pseudo-domains); the reward head is not trained. The draw depends on (seed, row position)
    only, so the pool scored whole or block by block selects the same rows.
    """

    name = "stratified"
    needs_reward = False

    def score_features(
        self, hid: np.ndarray, ctx: Context, positions: np.ndarray | None = None, chars: np.ndarray | None = None
    ) -> Scores:
        if positions is None:
            raise RuntimeError("stratified scoring needs the rows' positions")
        return {"score": row_uniform(ctx.config.seed, positions), **self._member_scores(hid, ctx)}
