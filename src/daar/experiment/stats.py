"""The statistics of "is this method better than random?": a t interval over seeds, Holm, a noise floor.

Why a t interval over the per-seed paired differences, not a bootstrap: with 3 to 10 seeds a
percentile bootstrap that resamples seeds sees only the spread those few seeds happen to show
(its variance is biased low by (n-1)/n and it cannot be wider than the seeds' range), so a true
difference of zero came out "resolved" 20% of the time at 3 seeds and 12% at 5 against a nominal
5% (benchmarks/calibration.py). The t interval is exact when the per-seed differences are normal
and close to nominal otherwise, at any number of seeds (tests/experiment/test_calibration.py).
Items still matter, but inside a seed: every model is scored on the same items, so each seed's
difference is already paired over them.

Why Holm: a study compares several methods with random and a reader looks at the best one, so
each method's test is held to Holm's step-down level and its interval is drawn at that level; a
difference counts as resolved only when Holm rejects it (its interval then excludes zero).

Why a floor: random is drawn twice per tuning seed, and the difference between the two draws is
what selection noise alone does. A method is called ahead of random only when Holm resolves it
and its difference also lies beyond the floor's own interval at the same level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass
class Interval:
    """Mean of per-seed differences with its t interval at `level` and two-sided p value."""

    difference: float
    low: float
    high: float
    level: float
    seeds: int
    p: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def t_interval(differences: Sequence[float], level: float = LEVEL) -> Interval:
    """The t interval of the mean of `differences` (one per seed) at `level`; with one seed the
    interval is unbounded (nothing is known about the spread)."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        raise ValueError("no paired seeds to compare")
    mean = float(d.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, level, 1, 1.0)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        p = 0.0 if mean != 0 else 1.0
        return Interval(mean, mean, mean, level, n, p)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return Interval(mean, mean - half, mean + half, level, n, p)


def holm_levels(pvalues: Sequence[float], alpha: float = 1 - LEVEL) -> tuple[list[float], list[bool]]:
    """Holm's step-down: each test's own level (alpha / (m - rank)) and whether it is rejected.

    A test is rejected only when it and every test with a smaller p value pass their levels."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    levels = [0.0] * m
    rejected = [False] * m
    going = True
    for rank, i in enumerate(order):
        levels[i] = alpha / (m - rank)
        going = going and pvalues[i] <= levels[i]
        rejected[i] = going
    return levels, rejected


def corrected(per_method: dict[str, Sequence[float]], alpha: float = 1 - LEVEL) -> dict[str, dict[str, object]]:
    """Each method's interval at its Holm level, and whether Holm resolves it (the family is every
    method given). The uncorrected 95% interval is kept beside it."""
    names = list(per_method)
    plain = {name: t_interval(per_method[name]) for name in names}
    levels, rejected = holm_levels([plain[n].p for n in names], alpha)
    found: dict[str, dict[str, object]] = {}
    for name, level, resolved in zip(names, levels, rejected, strict=True):
        found[name] = {
            "corrected": t_interval(per_method[name], 1 - level),
            "uncorrected": plain[name],
            "resolved": resolved,
        }
    return found


def beyond_floor(difference: float, floor: Interval, lower_is_better: bool) -> bool:
    """Whether a method's difference from random lies past what two random draws differ by: below
    the floor interval's low end when lower is better, above its high end otherwise."""
    return difference < floor.low if lower_is_better else difference > floor.high


def ahead(found: dict[str, object], floor: Sequence[float] | None, lower_is_better: bool) -> bool:
    """The study's call: Holm resolves the method's difference in the better direction, and (when
    the study measured one) the difference lies beyond the floor's interval (the per-seed
    differences of two random draws) drawn at the method's corrected level."""
    interval = found["corrected"]
    assert isinstance(interval, Interval)
    better = interval.difference < 0 if lower_is_better else interval.difference > 0
    if not (found["resolved"] and better):
        return False
    if floor is None or len(floor) < 2:
        return True
    return beyond_floor(interval.difference, t_interval(floor, interval.level), lower_is_better)


def minimum_detectable(sd: float, seeds: int, alpha: float, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t test at `alpha` detects with `power`
    given the per-seed differences' standard deviation (noncentral t)."""
    df = seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    se = sd / math.sqrt(seeds)

    def achieved(delta: float) -> float:
        shift = delta / se
        return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))

    low, high = 0.0, 20 * se
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if achieved(middle) < power else (low, middle)
    return high
