"""Inter- and intra-diversity on e(x) (DaaR paper, section 3), and the domain mix of a selection.

Labels are integers 0..K-1 with a list of K names, whether they are ground-truth domains or a
run's pseudo-domains, so the same numbers describe a pool, a selection or a contrastive pool. A
domain with no rows in a set has no centroid: its entries are None (JSON null) and it is left out
of the set's means instead of poisoning them with NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _check(x: np.ndarray, labels: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"expected embeddings (N, d) and labels (N,), got {x.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError("labels must be non-negative integers (domain indices)")
    k = int(k if k is not None else (labels.max() + 1 if len(labels) else 0))
    if len(labels) and labels.max() >= k:
        raise ValueError(f"label {labels.max()} is out of range for {k} domains")
    return x, labels.astype(np.int64), k


def centroids(x: np.ndarray, labels: np.ndarray, k: int | None = None) -> np.ndarray:
    """(K, d) mean e(x) per domain (the paper averages raw embeddings); NaN rows for empty domains."""
    x, labels, k = _check(x, labels, k)
    out = np.full((k, x.shape[1]), np.nan)
    for j in range(k):
        rows = labels == j
        if rows.any():
            out[j] = x[rows].mean(0)
    return out


@dataclass
class RowDiversity:
    """Per-row measures. inter: summed cos to the OTHER domains' centroids (higher = closer to other
    domains = more inter-diverse). intra: cos to the row's own centroid (lower = farther from its
    domain's centre = more intra-diverse)."""

    inter: np.ndarray
    intra: np.ndarray
    centroids: np.ndarray


def row_measures(x: np.ndarray, labels: np.ndarray, k: int | None = None) -> RowDiversity:
    x, labels, k = _check(x, labels, k)
    cents = centroids(x, labels, k)
    present = ~np.isnan(cents).any(1)
    cos = unit(x) @ unit(np.nan_to_num(cents)).T  # (N, K); empty domains give 0 and are masked below
    cos[:, ~present] = 0.0
    own = cos[np.arange(len(x)), labels] if len(x) else np.zeros(0)
    return RowDiversity(inter=cos.sum(1) - own, intra=own, centroids=cents)


def summarize(x: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Set-level diversity: inter = mean (1 - cos) over centroid pairs, intra = mean (1 - cos to own
    centroid) over rows, plus both per domain and the centroid distance matrix."""
    x, labels, k = _check(x, labels, len(names))
    rows = row_measures(x, labels, k)
    present = ~np.isnan(rows.centroids).any(1)
    cu = unit(np.nan_to_num(rows.centroids))
    dist = 1.0 - cu @ cu.T
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k) if present[a] and present[b]]
    per_domain: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(names):
        mask = labels == j
        others = [dist[j, o] for o in range(k) if o != j and present[o]]
        per_domain[name] = {
            "rows": int(mask.sum()),
            "intra_diversity": float(np.mean(1.0 - rows.intra[mask])) if mask.any() else None,
            "inter_diversity": float(np.mean(others)) if present[j] and others else None,
            "mean_row_inter": float(rows.inter[mask].mean()) if mask.any() else None,
            "mean_row_intra": float(rows.intra[mask].mean()) if mask.any() else None,
        }
    matrix = [[float(dist[a, b]) if present[a] and present[b] else None for b in range(k)] for a in range(k)]
    return {
        "rows": len(x),
        "domains": list(names),
        "inter_diversity": float(np.mean([dist[a, b] for a, b in pairs])) if pairs else None,
        "intra_diversity": float(np.mean(1.0 - rows.intra)) if len(x) else None,
        "per_domain": per_domain,
        "centroid_distance": matrix,
    }


def domain_mix(labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Counts and fractions per domain, entropy (nats) and entropy / log K (1 = perfectly balanced)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(names))[: len(names)] if len(labels) else np.zeros(len(names))
    total = int(counts.sum())
    fractions = counts / total if total else np.zeros(len(names))
    nonzero = fractions[fractions > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    return {
        "rows": total,
        "counts": {n: int(c) for n, c in zip(names, counts, strict=True)},
        "fractions": {n: float(f) for n, f in zip(names, fractions, strict=True)},
        "entropy": entropy,
        "normalized_entropy": entropy / float(np.log(len(names))) if len(names) > 1 else None,
    }


def kept_per_domain(pool_labels: np.ndarray, selected: np.ndarray, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per domain: rows in the pool, rows a selection kept, and the kept fraction. `selected` is a
    boolean mask over the pool or an array of pool indices."""
    pool_labels = np.asarray(pool_labels, dtype=np.int64)
    selected = np.asarray(selected)
    mask = selected if selected.dtype == bool else np.isin(np.arange(len(pool_labels)), selected)
    result = {}
    for j, name in enumerate(names):
        in_pool = int((pool_labels == j).sum())
        kept = int(((pool_labels == j) & mask).sum())
        result[name] = {"pool": in_pool, "kept": kept, "fraction": kept / in_pool if in_pool else None}
    return result


def encode_labels(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """String labels to integers, names in sorted order (stable across runs and sets)."""
    names = sorted(set(values))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64), names
