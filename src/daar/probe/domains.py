"""Model-aware centroids and pseudo-labels (docs/METHOD.md, steps 3 and 4).

The centroid of a domain is the mean e(x) of its example pairs, i.e. where the model's own idea of
the domain sits in its embedding space. k-means on the probe set, started at those centroids
with a single init, then assigns every probe row to the domain whose (refined) centroid is
nearest; cluster j keeps the name of domain j because it started at that domain's centroid.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def example_centroids(emb: np.ndarray, domain: np.ndarray, k: int) -> np.ndarray:
    """(K, d) mean e(x) of each domain's examples; every domain must have at least one."""
    missing = [j for j in range(k) if not (domain == j).any()]
    if missing:
        raise ValueError(f"domains {missing} have no example rows, so they have no centroid")
    return np.stack([emb[domain == j].mean(0) for j in range(k)]).astype(np.float64)


def pseudo_labels(emb: np.ndarray, centroids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster index per row and the final centroids (authors: KMeans, init at centroids, n_init=1)."""
    k = len(centroids)
    if len(emb) < k:
        raise ValueError(f"the probe set has {len(emb)} rows, fewer than the {k} domains")
    model = KMeans(n_clusters=k, init=centroids, n_init=1, random_state=seed)
    labels = model.fit_predict(np.asarray(emb, dtype=np.float64))
    return labels.astype(np.int64), model.cluster_centers_.astype(np.float32)


def probe_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of the probe set: `size` rows drawn without replacement (all when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
