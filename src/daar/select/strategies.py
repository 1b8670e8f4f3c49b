"""How a budget of n rows is cut from scored rows: the paper's two strategies and `balanced`.

Every strategy returns exactly min(n, rows) sorted row indices, so the pipeline can check the
contract instead of trusting each selector. Ties are broken by row order and quotas by group
order, so a selection depends only on the scores, the groups and n.

Why `balanced` exists (docs/BALANCE.md): the diversity reward is the entropy of a domain probe,
and with small probers it is not comparable across domains. One pseudo-domain's rows (with
SmolLM2-135M: the common-sense rows) sit between the others and get most of the high entropies,
so the paper's top-n `overall` collapses onto that domain. `balanced` keeps the reward as the
ranking *inside* each pseudo-domain, and splits the budget across the pseudo-domains the probe
itself assigns, so no domain label is read and every domain the model knows keeps its share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Shares = Literal["equal", "proportional"]


def top_n(score: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores (ties by row order), sorted by row."""
    order = np.lexsort((np.arange(len(score)), -np.asarray(score, dtype=np.float64)))
    return np.sort(order[: max(0, min(n, len(score)))])


def allocate(sizes: Sequence[int] | np.ndarray, weights: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Integer quotas per group that sum to min(n, total rows), following `weights` where the
    groups are large enough (water-filling: a group smaller than its share gives all its rows and
    the rest of its share goes to the others by their weights; rounding by largest remainder,
    ties to the earlier group)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if sizes.shape != weights.shape or (weights < 0).any():
        raise ValueError("allocate: sizes and non-negative weights must have one entry per group")
    quota = np.zeros(len(sizes), dtype=np.int64)
    open_ = (sizes > 0) & (weights > 0)
    remaining = int(min(n, sizes[open_].sum()))
    while remaining > 0 and open_.any():
        share = remaining * np.where(open_, weights, 0.0) / weights[open_].sum()
        full = open_ & (share >= sizes)
        if full.any():
            quota[full] = sizes[full]
            remaining -= int(sizes[full].sum())
            open_ &= ~full
            continue
        base = np.floor(share).astype(np.int64)
        extra = remaining - int(base.sum())
        fraction = np.where(open_, share - base, -1.0)
        for g in np.lexsort((np.arange(len(sizes)), -fraction))[:extra]:
            base[g] += 1
        quota += base
        remaining = 0
    return quota


def by_quota(score: np.ndarray, group: np.ndarray, names: Sequence[str], quota: np.ndarray) -> np.ndarray:
    """The top `quota[g]` rows by score inside each group `names[g]`."""
    keep = [np.flatnonzero(group == name) for name in names]
    chosen = [members[top_n(score[members], int(q))] for members, q in zip(keep, quota, strict=True)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def group_sizes(group: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return np.array([int((group == name).sum()) for name in names], dtype=np.int64)


def balanced(
    score: np.ndarray, group: np.ndarray, names: Sequence[str], n: int, shares: Shares = "equal"
) -> np.ndarray:
    """n rows split across the groups (equal shares, or in proportion to group size), the highest
    scores inside each; a group smaller than its share gives all its rows to the budget."""
    sizes = group_sizes(group, names)
    weights = np.ones(len(names)) if shares == "equal" else sizes.astype(np.float64)
    return by_quota(score, group, names, allocate(sizes, weights, n))


def nested_balanced(
    score: np.ndarray,
    group: np.ndarray,
    sub: np.ndarray,
    names: Sequence[str],
    subclusters: int,
    n: int,
    shares: Shares = "equal",
) -> np.ndarray:
    """`balanced` one level down: each group's quota (as `balanced` gives it) split over its
    sub-clusters in proportion to their sizes, the highest scores inside each sub-cluster. `sub`
    holds each row's sub-cluster index (0 .. subclusters - 1) inside its group."""
    sizes = group_sizes(group, names)
    weights = np.ones(len(names)) if shares == "equal" else sizes.astype(np.float64)
    chosen = []
    for name, quota in zip(names, allocate(sizes, weights, n), strict=True):
        members = np.flatnonzero(group == name)
        cells = [str(s) for s in range(subclusters)]
        local = np.asarray(sub[members]).astype(str)
        inner = allocate(group_sizes(local, cells), group_sizes(local, cells).astype(np.float64), int(quota))
        chosen.append(members[by_quota(score[members], local, cells, inner)])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def customized(
    score: np.ndarray,
    group: np.ndarray,
    names: Sequence[str],
    n: int,
    target: str,
    target_fraction: float,
    other_fraction: float,
) -> np.ndarray:
    """The paper's targeted mix (top 50% of the target group, 10% of every other group), scaled to
    n rows. On the paper's balanced 4-domain pool the unscaled mix is exactly 20% of the rows, so
    with the default ratio this is the paper's selection; other budgets keep its proportions. When
    the fractions cannot fill the budget (other_fraction 0 and a small target group), the rest is
    the best-scoring remaining rows, so the budget is always met."""
    sizes = group_sizes(group, names)
    fractions = np.array([target_fraction if name == target else other_fraction for name in names])
    chosen = by_quota(score, group, names, allocate(sizes, sizes * fractions, n))
    missing = min(n, len(score)) - len(chosen)
    if missing > 0:
        rest = np.setdiff1d(np.arange(len(score)), chosen)
        chosen = np.sort(np.concatenate([chosen, rest[top_n(score[rest], missing)]]))
    return chosen


def mix_entropy(group: np.ndarray, names: Sequence[str]) -> float:
    """Entropy (nats) of the share of each group in a selection: log K when perfectly balanced."""
    counts = group_sizes(group, names).astype(np.float64)
    p = counts[counts > 0] / max(counts.sum(), 1.0)
    return float(-(p * np.log(p)).sum())
