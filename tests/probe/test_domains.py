"""Centroids from domain examples and pseudo-labels from k-means started at them."""

from __future__ import annotations

import numpy as np
import pytest

from daar.probe.domains import example_centroids, probe_rows, pseudo_labels


def test_clusters_keep_the_order_of_the_seed_centroids():
    rng = np.random.default_rng(0)
    centers = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    truth = rng.integers(0, 3, 300)
    emb = centers[truth] + rng.normal(0, 1, (300, 2))
    seeds = centers[[0, 0, 1, 2, 2]] + rng.normal(0, 0.5, (5, 2))
    cents = example_centroids(seeds, np.array([0, 0, 1, 2, 2]), 3)
    labels, fitted = pseudo_labels(emb, cents, seed=42)
    assert np.array_equal(labels, truth)
    assert np.allclose(fitted, centers, atol=0.3)


def test_a_domain_without_seeds_is_an_error():
    with pytest.raises(ValueError, match=r"domains \[1\] have no example rows"):
        example_centroids(np.zeros((2, 3)), np.array([0, 0]), 2)


def test_probe_set_is_seeded_and_capped():
    assert np.array_equal(probe_rows(10, 50, 1), np.arange(10))
    a = probe_rows(1000, 100, 1)
    assert len(a) == 100 and len(set(a)) == 100 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, probe_rows(1000, 100, 1)) and not np.array_equal(a, probe_rows(1000, 100, 2))
