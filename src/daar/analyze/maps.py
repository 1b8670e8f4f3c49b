"""2-D maps of e(x): where the domains (or pseudo-domains) sit and where a selection falls.

t-SNE from scikit-learn by default; UMAP when the optional `umap` package is importable and asked
for. At most `max_points` rows are drawn (seeded), since t-SNE is quadratic-ish and a 16,000-point
scatter is unreadable anyway; selected rows are sampled first up to half the budget, so a small
selection stays visible. The coordinates come back with the pool indices they belong to, so the
report can draw the same map interactively.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from daar.errors import UserError

Method = Literal["auto", "tsne", "umap"]


@dataclass
class MapResult:
    coords: np.ndarray  # (m, 2)
    indices: np.ndarray  # (m,) row indices into the embeddings that were passed in
    method: str

    def to_json(self, labels: np.ndarray | None, names: list[str] | None, selected: np.ndarray | None) -> dict:
        points = []
        for (px, py), i in zip(self.coords.tolist(), self.indices.tolist(), strict=True):
            point = {"index": int(i), "x": px, "y": py}
            if labels is not None and names is not None:
                point["label"] = names[int(labels[i])]
            if selected is not None:
                point["selected"] = bool(selected[i])
            points.append(point)
        return {"method": self.method, "points": points}


def sample_indices(n: int, max_points: int, seed: int, selected: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of at most `max_points` rows; selected rows get up to half the budget first."""
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(0, dtype=np.int64)
    if selected is not None and selected.any():
        sel = np.flatnonzero(selected)
        chosen = rng.choice(sel, size=min(len(sel), max_points // 2), replace=False)
    rest = np.setdiff1d(np.arange(n), chosen)
    extra = rng.choice(rest, size=max_points - len(chosen), replace=False)
    return np.sort(np.concatenate([chosen, extra]))


def embed_2d(
    x: np.ndarray,
    seed: int = 42,
    method: Method = "auto",
    max_points: int = 3000,
    selected: np.ndarray | None = None,
) -> MapResult:
    """2-D coordinates of (a seeded sample of) the rows of `x`."""
    x = np.asarray(x, dtype=np.float32)
    idx = sample_indices(len(x), max_points, seed, selected)
    data = x[idx]
    has_umap = importlib.util.find_spec("umap") is not None
    if method == "umap" and not has_umap:
        raise UserError("method 'umap' needs the optional package umap-learn; use 'tsne'")
    chosen = "umap" if method == "umap" or (method == "auto" and has_umap) else "tsne"
    if len(idx) < 3:
        return MapResult(np.zeros((len(idx), 2)), idx, chosen)
    if chosen == "umap":
        import umap

        coords = umap.UMAP(n_components=2, random_state=seed, metric="cosine").fit_transform(data)
    else:
        coords = _tsne(data, seed)
    return MapResult(np.asarray(coords, dtype=np.float64), idx, chosen)


# t-SNE is fitted on at most this many of the drawn rows, the others placed among their nearest
# fitted neighbours: Barnes-Hut t-SNE costs about n log n per iteration, and a map of 2,000
# points fitted on 1,000 with 500 iterations took 40% of the full fit's time on 2 shared CPU
# cores (benchmarks/map_speed.py on the 16k pool), and kept nearly as many of each point's
# neighbours (trustworthiness 0.969 against 0.985; docs/RESULTS.md).
FIT_POINTS = 1000
TSNE_ITERATIONS = 500
PLACE_NEIGHBOURS = 5


def _tsne(data: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    if data.shape[1] > 50 and len(data) > 50:  # the usual PCA step: same map, far faster
        data = PCA(n_components=50, random_state=seed).fit_transform(data)
    fit = np.arange(len(data))
    if len(data) > FIT_POINTS:
        fit = np.sort(np.random.default_rng(seed).choice(len(data), FIT_POINTS, replace=False))
    perplexity = float(min(30.0, max(2.0, (len(fit) - 1) / 3)))
    # One OpenMP thread: after a torch forward pass in the same process, sklearn's Barnes-Hut
    # threads fight torch's spinning ones and t-SNE ran 40x slower on a 2-core machine.
    with threadpool_limits(1, user_api="openmp"):
        fitted = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            random_state=seed,
            metric="cosine",
            max_iter=TSNE_ITERATIONS,
        ).fit_transform(data[fit])
        coords = np.zeros((len(data), 2))
        coords[fit] = fitted
        rest = np.setdiff1d(np.arange(len(data)), fit)
        if len(rest):
            neighbours = NearestNeighbors(n_neighbors=PLACE_NEIGHBOURS, metric="cosine").fit(data[fit])
            dist, near = neighbours.kneighbors(data[rest])
            weights = 1.0 / (dist + 1e-9)
            coords[rest] = (fitted[near] * weights[..., None]).sum(1) / weights.sum(1, keepdims=True)
    return coords


def plot_map(
    result: MapResult,
    path: Path,
    labels: np.ndarray | None = None,
    names: list[str] | None = None,
    selected: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """A PNG scatter: colour = domain, selected rows drawn on top with a dark edge, others faded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idx, xy = result.indices, result.coords
    lab = np.zeros(len(idx), dtype=np.int64) if labels is None else np.asarray(labels)[idx]
    legend_names = names if (labels is not None and names) else ["rows"]
    sel = None if selected is None else np.asarray(selected, dtype=bool)[idx]
    cmap = plt.get_cmap("tab10" if len(legend_names) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=120)
    for j, name in enumerate(legend_names):
        mine = lab == j
        colour = cmap(j % cmap.N)
        if sel is None:
            ax.scatter(xy[mine, 0], xy[mine, 1], s=6, color=colour, alpha=0.7, label=name, linewidths=0)
            continue
        ax.scatter(xy[mine & ~sel, 0], xy[mine & ~sel, 1], s=5, color=colour, alpha=0.15, linewidths=0)
        ax.scatter(
            xy[mine & sel, 0],
            xy[mine & sel, 1],
            s=14,
            color=colour,
            alpha=0.9,
            edgecolors="black",
            linewidths=0.4,
            label=f"{name} (selected {int((mine & sel).sum())})",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{result.method} of e(x), {len(idx)} rows")
    ax.legend(loc="best", fontsize=8, markerscale=2, frameon=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
