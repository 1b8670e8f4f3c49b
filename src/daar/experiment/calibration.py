"""How often does a comparison call a difference resolved when there is none? Simulated studies.

A study's "method minus random" is resolved when its interval excludes zero; at a 95% level that
should happen in 5% of studies where the true difference is zero. Whether it does depends on the
interval and on how the noise is made: here, per task, a per-seed part (tuning and selection
noise, the same for every item of the seed) and a per-item part (each item's own difference), as
in a study where every model is scored on the same items. `first_study_noise` reads both from the
first evidence study's committed results (docs/experiment_evidence_cpu/), so the check is made
with the noise this project's own study had (tests/experiment/test_calibration.py;
benchmarks/calibration.py prints the figures of docs/EVIDENCE.md, section 5).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daar.experiment.compare import ItemScores, paired_bootstrap
from daar.experiment.stats import t_interval


@dataclass(frozen=True)
class Noise:
    """Standard deviations of one task's method-minus-random difference: per seed (`seed`, the part
    shared by the seed's items) and per item (`item`), with `items` items per task."""

    tasks: tuple[str, ...]
    seed: tuple[float, ...]
    item: tuple[float, ...]
    items: int


def first_study_noise(folder: Path, items: int = 50) -> Noise:
    """The noise of the first evidence study: the per-seed spread of each task's difference from
    random (pooled over its methods, from results.csv), and the per-item spread that its paired
    bootstrap intervals (comparison.json, 3 seeds x `items` items) imply once the seed part is
    accounted for. An estimate: the study kept summaries, not every item."""
    rows = list(csv.DictReader((Path(folder) / "results.csv").open(encoding="utf-8")))
    found = json.loads((Path(folder) / "comparison.json").read_text(encoding="utf-8"))
    tasks = tuple(t for t in found[0] if isinstance(found[0][t], dict) and t != "average")
    random = {r["seed"]: r for r in rows if r["method"] == "random"}
    methods = sorted({r["method"] for r in rows} - {"random", "base"})
    seed_sd, item_sd = [], []
    for task in tasks:
        variances, widths = [], []
        for method in methods:
            diffs = [float(r[task]) - float(random[r["seed"]][task]) for r in rows if r["method"] == method]
            variances.append(np.var(diffs, ddof=1))
            entry = next(f for f in found if f["method"] == method)[task]
            widths.append((entry["high"] - entry["low"]) / (2 * 1.96))
        seeds = 3
        total = float(np.mean(variances))
        boot = float(np.mean(np.square(widths)))
        # bootstrap variance ~ (n-1)/n^2 * seed variance + item variance / (n * items)
        item_var = max(boot - (seeds - 1) / seeds**2 * total, 0.0) * seeds * items
        seed_sd.append(float(np.sqrt(max(total - item_var / items, 0.0))))
        item_sd.append(float(np.sqrt(item_var)))
    return Noise(tasks, tuple(seed_sd), tuple(item_sd), items)


def simulate(noise: Noise, seeds: int, studies: int, shift: float = 0.0, rng_seed: int = 0) -> np.ndarray:
    """(studies, seeds, tasks, items) per-item differences method - random with a true average
    difference `shift` on every task."""
    rng = np.random.default_rng(rng_seed)
    k = len(noise.tasks)
    per_seed = rng.normal(0, 1, (studies, seeds, k, 1)) * np.array(noise.seed)[None, None, :, None]
    per_item = rng.normal(0, 1, (studies, seeds, k, noise.items)) * np.array(noise.item)[None, None, :, None]
    return shift + per_seed + per_item


def t_rate(differences: np.ndarray) -> float:
    """Share of simulated studies whose 95% t interval over the per-seed task-average differences
    excludes zero."""
    per_seed = differences.mean(axis=3).mean(axis=2)  # (studies, seeds)
    return float(np.mean([t_interval(row).excludes_zero for row in per_seed]))


def bootstrap_rate(differences: np.ndarray, replicates: int = 1000) -> float:
    """The same share for the first study's interval: the paired bootstrap over items and seeds of
    daar.experiment.compare (the baseline's items are zero, the method's the differences)."""
    studies, seeds, k, items = differences.shape
    tasks = [f"task{j}" for j in range(k)]
    ids = [str(i) for i in range(items)]
    ones = np.ones(items)
    resolved = 0
    for s in range(studies):
        method = {
            seed: {t: ItemScores(ids, differences[s, seed, j], ones) for j, t in enumerate(tasks)}
            for seed in range(seeds)
        }
        zero = {seed: {t: ItemScores(ids, np.zeros(items), ones) for t in tasks} for seed in range(seeds)}
        found = paired_bootstrap(method, zero, tasks, seed=s, replicates=replicates)
        resolved += int(found["average"]["resolved"])
    return resolved / studies
