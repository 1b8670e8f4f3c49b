"""The report's figures as PNG bytes: histograms of entropy / reward / score, the 2-D map, domain mixes.

Figures are drawn on bare `matplotlib.figure.Figure` objects (Agg canvas, no pyplot), so drawing never
touches a display or pyplot's global state, and the same bytes go both inline into the HTML (base64)
and to `figures/NAME.png` beside it.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from daar.utils.cache import atomic_path

SELECTED_COLOUR = "#d62728"
POOL_COLOUR = "#9aa5b1"


@dataclass
class PngFigure:
    """One rendered figure: `name` is its file stem under figures/, `title` its caption."""

    name: str
    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def histogram(name: str, title: str, xlabel: str, values: np.ndarray, selected: np.ndarray | None) -> PngFigure:
    """Distribution over all scored rows, with the selected rows' distribution drawn over it."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(values[keep], bins=40) if keep.any() else 10
    ax.hist(values[keep], bins=bins, color=POOL_COLOUR, label=f"all scored ({int(keep.sum())})")
    if selected is not None:
        chosen = keep & np.asarray(selected, dtype=bool)
        ax.hist(values[chosen], bins=bins, color=SELECTED_COLOUR, alpha=0.8, label=f"selected ({int(chosen.sum())})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return PngFigure(name, title, _png(fig))


def map_figure(name: str, title: str, data: dict[str, Any]) -> PngFigure:
    """Scatter of map.json points: colour = label, selected rows on top with a dark edge, others faded."""
    points = data.get("points") or []
    xy = np.array([[float(p.get("x", 0.0)), float(p.get("y", 0.0))] for p in points]).reshape(-1, 2)
    labels = [str(p.get("label", "rows")) for p in points]
    selected = np.array([bool(p.get("selected", False)) for p in points], dtype=bool)
    names = sorted(set(labels))
    lab = np.array([names.index(x) for x in labels], dtype=np.int64)
    fig = Figure(figsize=(7.0, 6.0))
    ax = fig.add_subplot()
    palette = _palette(len(names))
    for j, label in enumerate(names):
        mine = lab == j
        ax.scatter(xy[mine & ~selected, 0], xy[mine & ~selected, 1], s=6, color=palette[j], alpha=0.25, linewidths=0)
        ax.scatter(
            xy[mine & selected, 0],
            xy[mine & selected, 1],
            s=16,
            color=palette[j],
            edgecolors="black",
            linewidths=0.5,
            label=f"{label} ({int((mine & selected).sum())} selected / {int(mine.sum())})",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    if names:
        ax.legend(fontsize=8, markerscale=1.5, loc="best")
    return PngFigure(name, title, _png(fig))


def mix_figure(name: str, title: str, mixes: dict[str, dict[str, Any]]) -> PngFigure:
    """Grouped bars: fraction of each domain in every set of `mixes` (e.g. pool vs selection)."""
    sets = [(key, mix) for key, mix in mixes.items() if isinstance(mix, dict) and mix.get("fractions")]
    domains: list[str] = []
    for _, mix in sets:
        domains += [d for d in mix["fractions"] if d not in domains]
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(sets))
    colours = [POOL_COLOUR, SELECTED_COLOUR, "#1f77b4", "#2ca02c"]
    for i, (key, mix) in enumerate(sets):
        heights = [float(mix["fractions"].get(d) or 0.0) for d in domains]
        entropy = mix.get("normalized_entropy")
        suffix = f", H/log K {entropy:.3f}" if isinstance(entropy, int | float) else ""
        ax.bar(
            np.arange(len(domains)) + (i - (len(sets) - 1) / 2) * width,
            heights,
            width=width,
            color=colours[i % len(colours)],
            label=f"{key} ({mix.get('rows', '?')} rows{suffix})",
        )
    tallest = max((float(f or 0.0) for _, mix in sets for f in mix["fractions"].values()), default=1.0)
    ax.set_ylim(0, max(tallest, 0.05) * 1.35)  # head room for the legend above the bars
    ax.set_xticks(np.arange(len(domains)), domains, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("fraction of rows")
    ax.set_title(title)
    if sets:
        ax.legend(fontsize=8, loc="upper left")
    return PngFigure(name, title, _png(fig))


def rounds_figure(
    name: str, title: str, rounds: list[int], series: dict[str, list[float | None]], ylabel: str, stacked: bool = False
) -> PngFigure:
    """Values per co-evolution round: one line per series, or stacked bars (shares that sum to 1)."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    palette = _palette(len(series))
    bottom = np.zeros(len(rounds))
    for j, (label, values) in enumerate(series.items()):
        y = np.array([np.nan if v is None else float(v) for v in values])
        if stacked:
            ax.bar(rounds, np.nan_to_num(y), bottom=bottom, color=palette[j], label=label)
            bottom += np.nan_to_num(y)
        else:
            ax.plot(rounds, y, marker="o", color=palette[j], label=label)
    ax.set_xticks(rounds)
    ax.set_xlabel("round (0: the base model)" if not stacked else "round (selection so far)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if series:
        ax.legend(fontsize=7, loc="best", ncol=2)
    return PngFigure(name, title, _png(fig))


def _palette(n: int) -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(j % cmap.N) for j in range(n)]


def save_figures(figures: list[PngFigure], folder: Path) -> list[Path]:
    """Write each figure to folder/NAME.png atomically (a killed run never leaves half a PNG)."""
    paths = []
    for figure in figures:
        target = Path(folder) / f"{figure.name}.png"
        with atomic_path(target) as tmp:
            tmp.write_bytes(figure.png)
        paths.append(target)
    return paths
