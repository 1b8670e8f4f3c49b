"""Every method against random, seed by seed, on one measure and on each of its parts.

A measure is an average over parts: the held-out NLL is the mean over the pool's groups
(daar.experiment.heldout), the benchmark score the mean over tasks. Each cell gives one value per
part; random's value at a tuning seed is the mean over its draws. A method's difference at a seed
is its value minus random's there, and the comparison is made on those per-seed differences
(daar.experiment.stats): the average with Holm over the methods, each part with its own 95%
t interval (the parts say where a lead comes from; they are not tested as a family). The noise
floor is random's second draw minus its first, with the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import fmean
from typing import Any

from daar.experiment.stats import Interval, ahead, corrected, t_interval

BASELINE = "random"
FLOOR = "random (draw 2 - draw 1)"

Values = Callable[[dict[str, Any]], dict[str, float] | None]  # a cell's value per part, or None


def heldout_values(cell: dict[str, Any]) -> dict[str, float] | None:
    found = cell.get("heldout")
    return dict(found["groups"]) if found else None


def benchmark_values(cell: dict[str, Any]) -> dict[str, float] | None:
    return dict(cell["scores"]) if cell.get("scores") else None


def _by_seed(cells: list[dict[str, Any]], values: Values, ratio: float) -> dict[str, dict[int, list[dict[str, float]]]]:
    """method -> tuning seed -> the part values of each of its draws (in draw order)."""
    found: dict[str, dict[int, list[tuple[int, dict[str, float]]]]] = {}
    for cell in cells:
        if cell.get("ratio") != ratio or cell.get("seed") is None:
            continue
        parts = values(cell)
        if parts is None:
            continue
        draws = found.setdefault(cell["method"], {}).setdefault(int(cell["seed"]), [])
        draws.append((int(cell.get("draw", 1)), parts))
    ordered = {m: {s: sorted(d, key=lambda x: x[0]) for s, d in seeds.items()} for m, seeds in found.items()}
    return {m: {s: [p for _, p in d] for s, d in seeds.items()} for m, seeds in ordered.items()}


def _mean_parts(draws: list[dict[str, float]]) -> dict[str, float]:
    return {part: fmean(d[part] for d in draws) for part in draws[0]}


def _average(parts: dict[str, float]) -> float:
    return fmean(parts.values())


def compare_seeds(
    cells: list[dict[str, Any]], values: Values, ratio: float, lower_is_better: bool = True
) -> dict[str, Any]:
    """Per-seed differences from random at `ratio` for every other method: the average with Holm,
    each part at 95%, the floor, and the study's call (`ahead`). JSON-ready."""
    grouped = _by_seed(cells, values, ratio)
    base = grouped.get(BASELINE)
    if not base:
        return {}
    random_mean = {seed: _mean_parts(draws) for seed, draws in base.items()}
    parts = sorted(next(iter(random_mean.values())))
    floor_seeds = sorted(s for s, draws in base.items() if len(draws) >= 2)
    floor = {seed: {p: base[seed][1][p] - base[seed][0][p] for p in parts} for seed in floor_seeds}
    floor_average = [_average(floor[s]) for s in floor_seeds]

    differences: dict[str, dict[int, dict[str, float]]] = {}
    for method, seeds in grouped.items():
        if method == BASELINE:
            continue
        shared = sorted(set(seeds) & set(random_mean))
        if shared:
            differences[method] = {
                s: {p: _mean_parts(seeds[s])[p] - random_mean[s][p] for p in parts} for s in shared
            }
    averages = {m: [_average(d[s]) for s in sorted(d)] for m, d in differences.items()}
    family = corrected(averages) if averages else {}
    methods = []
    for method, per_seed in differences.items():
        found = family[method]
        corrected_interval: Interval = found["corrected"]  # type: ignore[assignment]
        methods.append(
            {
                "method": method,
                "seeds": sorted(per_seed),
                "per_seed": {str(s): _average(per_seed[s]) for s in sorted(per_seed)},
                "average": corrected_interval.as_dict(),
                "average_uncorrected": found["uncorrected"].as_dict(),  # type: ignore[union-attr]
                "resolved": bool(found["resolved"]),
                "ahead": ahead(found, floor_average or None, lower_is_better),
                "parts": {p: t_interval([per_seed[s][p] for s in sorted(per_seed)]).as_dict() for p in parts},
            }
        )
    result: dict[str, Any] = {
        "ratio": ratio,
        "baseline": BASELINE,
        "random": {"per_seed": {str(s): _average(random_mean[s]) for s in sorted(random_mean)}},
        "methods": methods,
        "lower_is_better": lower_is_better,
    }
    if len(floor_seeds) >= 2:
        result["floor"] = {
            "seeds": floor_seeds,
            "per_seed": {str(s): a for s, a in zip(floor_seeds, floor_average, strict=True)},
            "average": t_interval(floor_average).as_dict(),
            "parts": {p: t_interval([floor[s][p] for s in floor_seeds]).as_dict() for p in parts},
        }
    return result


def seeds_markdown(found: dict[str, Any], title: str, titles: dict[str, str] | None = None) -> str:
    """The average table (Holm interval, R, ahead, floor) and the per-part table, as markdown."""
    if not found or not found.get("methods"):
        return ""
    titles = titles or {}
    floor = found.get("floor")
    better = "negative" if found["lower_is_better"] else "positive"
    lines = [
        "",
        f"## {title}: method minus random, per-seed paired differences",
        "",
        f"Random's value at a seed is the mean of its draws; {better} means better than random. Interval: t over "
        "the seeds at the method's Holm level (family: the methods below); R: Holm resolves it; ahead: R, in the "
        "better direction, and beyond the floor's interval at that level.",
        "",
        "| Method | Seeds | Difference | Holm interval (level) | 95% t interval | R | Ahead |",
        "|---|---:|---:|---|---|:-:|:-:|",
    ]
    for row in found["methods"]:
        a, u = row["average"], row["average_uncorrected"]
        lines.append(
            f"| {row['method']} | {len(row['seeds'])} | {a['difference']:+.4f} | [{a['low']:+.4f}, {a['high']:+.4f}] "
            f"({a['level'] * 100:.1f}%) | [{u['low']:+.4f}, {u['high']:+.4f}] | {'R' if row['resolved'] else ''} | "
            f"{'yes' if row['ahead'] else 'no'} |"
        )
    if floor:
        f = floor["average"]
        lines.append(
            f"| {FLOOR} | {len(floor['seeds'])} | {f['difference']:+.4f} | – | [{f['low']:+.4f}, {f['high']:+.4f}] | "
            f"{'R' if f['low'] > 0 or f['high'] < 0 else ''} | – |"
        )
    parts = list(found["methods"][0]["parts"])
    lines += [
        "",
        "Per part (95% t interval over seeds, not corrected): where each difference of the average comes from.",
        "",
        "| Method | " + " | ".join(titles.get(p, p) for p in parts) + " |",
        "|---|" + "---:|" * len(parts),
    ]
    rows = [(r["method"], r["parts"]) for r in found["methods"]] + ([(FLOOR, floor["parts"])] if floor else [])
    for name, values in rows:
        cells = [f"{v['difference']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]" for v in (values[p] for p in parts)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
