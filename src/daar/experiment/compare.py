"""Is a method better than the baseline, or is the difference noise? A paired bootstrap over items and seeds.

Every model of an experiment is scored on the same benchmark items, and each method has a cell
per seed, so the comparison can be paired twice: each replicate draws items with replacement
(the same draw for both methods) and seeds with replacement (method and baseline share the seed
value, which fixes the tuning seed and the selection seed), and recomputes the difference of the
task metrics exactly as the table does (NLL: summed log-likelihood over summed tokens; other
metrics: mean over items). The interval is the 2.5-97.5 percentile of 2,000 replicates; a
difference counts as resolved when its interval excludes zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPLICATES = 2000


@dataclass
class ItemScores:
    """Per item of one task for one cell: a numerator and a denominator of the task metric."""

    ids: list[str]
    num: np.ndarray
    den: np.ndarray


def load_items(cell: dict[str, Any], metrics: dict[str, str] | None = None) -> dict[str, ItemScores] | None:
    """The cell's per-item scores from its eval samples (written beside eval.json); None when the
    cell has none (a table built from summaries only), so it is left out of the comparison.
    `metrics` (task -> metric) replaces the cell's headline metrics, e.g. choice accuracy."""
    if not cell.get("eval_report"):
        return None
    report = Path(cell["eval_report"])
    samples = report.with_name(report.stem + ".samples.jsonl")
    if not samples.is_file():
        return None
    per_task: dict[str, tuple[list[str], list[float], list[float]]] = {}
    metrics = metrics or cell["metrics"]
    with open(samples, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            task = row["task"]
            if task not in metrics:
                continue
            value = row.get(metrics[task])
            if isinstance(value, list):  # nll: (log-likelihood, tokens)
                num, den = -float(value[0]), float(value[1])
            else:
                num, den = float(value), 1.0
            ids, nums, dens = per_task.setdefault(task, ([], [], []))
            ids.append(str(row["id"]))
            nums.append(num)
            dens.append(den)
    return {t: ItemScores(ids, np.asarray(n), np.asarray(d)) for t, (ids, n, d) in per_task.items()}


def paired_bootstrap(
    method: dict[int, dict[str, ItemScores]],
    baseline: dict[int, dict[str, ItemScores]],
    tasks: list[str],
    seed: int = 0,
    replicates: int = REPLICATES,
) -> dict[str, dict[str, float]]:
    """Difference method - baseline per task and for the task average: point value and 95% interval.

    `method` and `baseline` map seed -> task -> item scores; only seeds both have are paired.
    """
    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        return {}
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, len(seeds), size=(replicates, len(seeds)))
    per_task_reps: dict[str, np.ndarray] = {}
    result: dict[str, dict[str, float]] = {}
    for task in tasks:
        stacks = []
        for scores in (method, baseline):
            aligned = [_aligned(scores[s][task], method[seeds[0]][task].ids) for s in seeds]
            stacks.append((np.stack([a.num for a in aligned]), np.stack([a.den for a in aligned])))
        n_items = stacks[0][0].shape[1]
        item_draws = rng.integers(0, n_items, size=(replicates, n_items))
        counts = np.stack([np.bincount(row, minlength=n_items) for row in item_draws]).astype(np.float64)
        reps = np.zeros(replicates)
        point = 0.0
        for sign, (num, den) in zip((1.0, -1.0), stacks, strict=True):
            per_seed = (counts @ num.T) / (counts @ den.T)  # (replicates, seeds): metric on drawn items
            drawn = np.take_along_axis(per_seed, seed_draws, axis=1).mean(1)
            reps += sign * drawn
            point += sign * float((num.sum(1) / den.sum(1)).mean())
        per_task_reps[task] = reps
        result[task] = _summary(point, reps)
    average = np.mean([per_task_reps[t] for t in tasks], axis=0)
    result["average"] = _summary(float(np.mean([result[t]["difference"] for t in tasks])), average)
    result["average"]["seeds"] = float(len(seeds))
    return result


def _aligned(scores: ItemScores, ids: list[str]) -> ItemScores:
    if scores.ids == ids:
        return scores
    where = {item: i for i, item in enumerate(scores.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(f"cells were scored on different items (e.g. {missing[0]}); compare like with like")
    order = np.array([where[i] for i in ids])
    return ItemScores(ids, scores.num[order], scores.den[order])


def _summary(point: float, reps: np.ndarray) -> dict[str, float]:
    low, high = (float(v) for v in np.percentile(reps, [2.5, 97.5]))
    return {"difference": point, "low": low, "high": high, "resolved": float(low > 0 or high < 0)}


def comparisons(
    cells: list[dict[str, Any]], tasks: list[str], baseline: str = "random", metrics: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each method (at each ratio) against `baseline` at the same ratio, from the finished cells
    (on `metrics` instead of the headline metrics when given)."""
    items: dict[tuple[str, float], dict[int, dict[str, ItemScores]]] = {}
    for cell in cells:
        if cell.get("draw", 1) > 1:
            continue  # a method's further draws are the noise floor's (daar.experiment.paired), not paired here
        scores = load_items(cell, metrics) if cell.get("ratio") is not None else None
        if scores is not None:
            items.setdefault((cell["method"], cell["ratio"]), {})[int(cell["seed"])] = scores
    found = []
    for (method, ratio), per_seed in items.items():
        base = items.get((baseline, ratio))
        if method == baseline or base is None:
            continue
        difference = paired_bootstrap(per_seed, base, tasks)
        found.append({"method": method, "ratio": ratio, "baseline": baseline, **difference})
    return found


def comparison_markdown(
    found: list[dict[str, Any]], tasks: list[str], mode: str, titles: dict[str, str], what: str = ""
) -> str:
    if not found:
        return ""
    better = "negative" if mode == "nll" else "positive"
    lines = [
        "",
        f"## Against {found[0]['baseline']}{what}: difference and paired bootstrap 95% interval (items and seeds)",
        "",
        f"Method minus {found[0]['baseline']}; {better} means the method is better. "
        "Resolved (R) when the interval excludes zero.",
        "",
        "| Method | Ratio | Seeds | " + " | ".join(titles.get(t, t) for t in [*tasks, "average"]) + " |",
        "|---|---:|---:|" + "---:|" * (len(tasks) + 1),
    ]
    scale = 1.0 if mode == "nll" else 100.0
    for row in found:
        cells = []
        for task in [*tasks, "average"]:
            r = row.get(task)
            if not r:
                cells.append("–")
                continue
            mark = " R" if r["resolved"] else ""
            cells.append(f"{r['difference'] * scale:+.4f} [{r['low'] * scale:+.4f}, {r['high'] * scale:+.4f}]{mark}")
        seeds = int(row.get("average", {}).get("seeds", 0))
        lines.append(f"| {row['method']} | {row['ratio']:g} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
