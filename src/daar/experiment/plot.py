"""results.png: grouped bars per benchmark, one bar per model (base, then method x ratio), seed spread as error bars.

Two panels: the metric itself, and its change from the base model. The second is the one to read
at CPU scale, where tuning moves an NLL of ~2.5 by a few hundredths and bars from zero look equal.
"""

from __future__ import annotations

from pathlib import Path

from daar.experiment.table import AVERAGE, Row, column_title
from daar.utils.cache import atomic_path


def plot_results(rows: list[Row], tasks: list[str], mode: str, target: Path) -> Path:
    """Draw the figure into `target` (PNG, matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np


    columns = [*tasks, AVERAGE]
    scale = 1.0 if mode == "nll" else 100.0
    label = "NLL per token (lower is better)" if mode == "nll" else "score % (higher is better)"
    base = next((r for r in rows if r.ratio is None), None)
    x = np.arange(len(columns))
    width = 0.8 / max(len(rows), 1)
    figure, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.3 * len(columns) + 2), 8), sharex=True)
    colours = plt.get_cmap("tab10")
    for i, row in enumerate(rows):
        means = np.array([_or_nan(row.mean(c)) for c in columns]) * scale
        errors = np.array([row.std(c) or 0.0 for c in columns]) * scale
        name = row.label if row.ratio is None else f"{row.method} r={row.ratio:g}"
        offset = (i - (len(rows) - 1) / 2) * width
        axes[0].bar(x + offset, means, width, yerr=errors, capsize=2, label=name, color=colours(i % 10))
        if base is not None and row is not base:
            reference = np.array([_or_nan(base.mean(c)) for c in columns]) * scale
            axes[1].bar(x + offset, means - reference, width, yerr=errors, capsize=2, color=colours(i % 10))
    axes[0].set_ylabel(label)
    axes[1].axhline(0.0, color="black", linewidth=0.8)
    axes[1].set_ylabel("change from base model")
    axes[1].set_xticks(x, [column_title(c) for c in columns], rotation=30, ha="right")
    figure.suptitle("daar experiment: mean over seeds, error bars = standard deviation")
    # the legend sits between title and plots, so it never hides a bar
    figure.legend(loc="upper center", bbox_to_anchor=(0.5, 0.955), ncols=min(len(rows), 4), fontsize="small")
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return target


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
