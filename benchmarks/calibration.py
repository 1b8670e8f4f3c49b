"""How often each interval calls a difference resolved when there is none (docs/EVIDENCE.md, 7.1).

    python benchmarks/calibration.py [--studies 2000] [--bootstrap-studies 1000]

Simulated studies with zero true difference (and, for power, a true difference of 0.001), their
noise read from the first evidence study (docs/experiment_evidence_cpu/) by
daar.experiment.calibration, once as estimated there and once with all of it at the seed level.
Prints one markdown table: the share of studies resolved by the first study's paired bootstrap
(items and seeds) and by the t interval over per-seed differences, at 3, 5 and 10 seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from daar.experiment.calibration import Noise, bootstrap_rate, first_study_noise, simulate, t_rate

FIRST = Path(__file__).resolve().parents[1] / "docs" / "experiment_evidence_cpu"


def seed_only(noise: Noise) -> Noise:
    per_seed = np.sqrt(np.square(noise.seed) + np.square(noise.item) / noise.items)
    return Noise(noise.tasks, tuple(per_seed), tuple(0.0 for _ in noise.item), noise.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--bootstrap-studies", type=int, default=1000, help="the bootstrap is slow: fewer studies")
    parser.add_argument("--replicates", type=int, default=1000)
    args = parser.parse_args()
    estimated = first_study_noise(FIRST)
    structures = {"as estimated": estimated, "all at the seed level": seed_only(estimated)}
    print("| seeds | noise | bootstrap: false-resolved | t: false-resolved | t: power at a true 0.001 |")
    print("|--:|---|--:|--:|--:|")
    for seeds in (3, 5, 10):
        for name, noise in structures.items():
            null = simulate(noise, seeds, args.studies, rng_seed=seeds)
            shifted = simulate(noise, seeds, args.studies, shift=-0.001, rng_seed=100 + seeds)
            boot = bootstrap_rate(null[: args.bootstrap_studies], args.replicates)
            print(f"| {seeds} | {name} | {boot:.3f} | {t_rate(null):.3f} | {t_rate(shifted):.3f} |", flush=True)


if __name__ == "__main__":
    main()
