"""What a DaaR fit is made of beyond its heads: ensemble members and their seeds, the length lines.

Why members: two runs that differ only in `--seed` shared about 60% of their 20% selection, and
each seeded step (probe rows with k-means, probe head, reward head) moved it by about as much
(docs/RESULTS.md). A member is a whole fit with a seed of its own, so averaging members averages
out every one of those steps, not only the reward head's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daar.probe.heads import Head


@dataclass
class Member:
    """One whole fit (steps 4-7) with its own seed: probe rows, clusters, probe and reward heads."""

    seed: int
    probe: Head
    reward: Head | None  # None for selectors that need only the probe (stratified)
    cluster_centers: np.ndarray
    info: dict = field(default_factory=dict)


def member_seeds(seed: int, count: int) -> list[int]:
    """Member 0 keeps the run's seed, so a one-member ensemble is plain DaaR; the others draw theirs
    from (seed, m), so the members of runs with neighbouring seeds never coincide."""
    return [seed] + [int(np.random.SeedSequence([seed, m]).generate_state(1)[0]) for m in range(1, count)]


def fit_length_lines(reward: np.ndarray, log_chars: np.ndarray, group: np.ndarray, k: int) -> np.ndarray:
    """(K, 2) intercept and slope of reward ~ log(chars) by least squares inside each group; a group
    with fewer than two distinct lengths gets a flat line at its mean (0 when empty)."""
    lines = np.zeros((k, 2), dtype=np.float64)
    for g in range(k):
        x, y = log_chars[group == g], reward[group == g]
        if len(y) and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            lines[g] = (intercept, slope)
        elif len(y):
            lines[g, 0] = float(y.mean())
    return lines


def mean_of(arrays: list[np.ndarray]) -> np.ndarray:
    """The element-wise mean; one array comes back as it is (no rounding for a single member)."""
    return arrays[0] if len(arrays) == 1 else np.mean(np.stack(arrays), axis=0)


def member_metrics(member: Member) -> dict:
    found = {"seed": member.seed, "probe_metrics": member.probe.metrics}
    if member.reward is not None:
        found["reward_metrics"] = member.reward.metrics
    return found


def fitted_files(files: list[str]) -> list[str]:
    """probe, reward, centroids first (the one-member layout's order), then the other members'."""
    first = [f for f in ("probe.safetensors", "reward.safetensors", "centroids.safetensors") if f in files]
    return first + [f for f in files if f not in first]
