"""The primary interval holds its level at few seeds, with the first evidence study's noise.

2,000 simulated studies with zero true difference, their per-seed and per-item noise read from the
first study's committed results (docs/experiment_evidence_cpu/), and also with all of it at the
seed level (the case that made the old bootstrap call 25% of null studies resolved at 3 seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daar.experiment.calibration import Noise, first_study_noise, simulate, t_rate
from daar.experiment.stats import ahead, corrected, holm_levels, minimum_detectable, t_interval

FIRST_STUDY = Path(__file__).resolve().parents[2] / "docs" / "experiment_evidence_cpu"
STUDIES = 2000


def _seed_only(noise: Noise) -> Noise:
    """The same per-seed variance of every task, all of it shared by the seed's items."""
    per_seed = np.sqrt(np.square(noise.seed) + np.square(noise.item) / noise.items)
    return Noise(noise.tasks, tuple(per_seed), tuple(0.0 for _ in noise.item), noise.items)


@pytest.mark.parametrize("structure", ["first study", "all at the seed level"])
@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_false_resolved_rate_is_near_five_percent(seeds: int, structure: str) -> None:
    noise = first_study_noise(FIRST_STUDY)
    if structure != "first study":
        noise = _seed_only(noise)
    rate = t_rate(simulate(noise, seeds, STUDIES, rng_seed=seeds))
    power = t_rate(simulate(noise, seeds, STUDIES, shift=-0.001, rng_seed=100 + seeds))
    print(f"{structure}, {seeds} seeds: false-resolved {rate:.3f}, power at a true 0.001 {power:.3f}")
    assert 0.02 <= rate <= 0.08


def test_t_interval_matches_the_textbook() -> None:
    found = t_interval([1.0, 2.0, 3.0])
    assert found.difference == 2.0
    assert found.high - 2.0 == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-6)  # t(0.975, 2) * s / sqrt(n)
    assert found.p == pytest.approx(0.0742, abs=1e-4)  # t = 2 / (1 / sqrt 3) = 3.46 on 2 df
    assert t_interval([0.5]).low == -np.inf


def test_holm_steps_down_and_stops_at_the_first_failure() -> None:
    levels, rejected = holm_levels([0.01, 0.04, 0.02])
    assert levels == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2])
    assert rejected == [True, True, True]
    _, rejected = holm_levels([0.03, 0.001, 0.04])
    assert rejected == [False, True, False]  # 0.03 > 0.05 / 2 stops the steps after it


def test_a_method_is_ahead_only_beyond_the_floor() -> None:
    per_method = {"clear": [-0.010, -0.011, -0.009, -0.010], "small": [-0.0020, -0.0021, -0.0019, -0.0020]}
    found = corrected(per_method)
    assert found["clear"]["resolved"] and found["small"]["resolved"]
    floor = [0.004, -0.004, 0.003, -0.003]  # two random draws differ by this much
    assert ahead(found["clear"], floor, lower_is_better=True)
    assert not ahead(found["small"], floor, lower_is_better=True)
    assert ahead(found["small"], None, lower_is_better=True)
    assert not ahead(found["clear"], floor, lower_is_better=False)  # the wrong direction is never ahead


def test_minimum_detectable_effect_has_the_power_it_claims() -> None:
    sd, seeds, alpha = 0.0006, 8, 0.05 / 3
    delta = minimum_detectable(sd, seeds, alpha)
    rng = np.random.default_rng(0)
    from scipy import stats

    draws = rng.normal(delta, sd, (4000, seeds))
    t = draws.mean(1) / (draws.std(1, ddof=1) / np.sqrt(seeds))
    power = np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, seeds - 1))
    assert 0.77 < power < 0.83
