"""Diversity measures on hand-made point sets whose answers can be worked out on paper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daar.analyze.diversity import (
    centroids,
    domain_mix,
    encode_labels,
    kept_per_domain,
    row_measures,
    summarize,
)


def test_orthogonal_domains_have_inter_one_and_tight_domains_intra_zero():
    x = np.array([[1, 0, 0], [2, 0, 0], [0, 3, 0], [0, 1, 0]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    summary = summarize(x, labels, ["a", "b"])
    assert summary["inter_diversity"] == pytest.approx(1.0)
    assert summary["intra_diversity"] == pytest.approx(0.0, abs=1e-12)
    rows = row_measures(x, labels)
    np.testing.assert_allclose(rows.inter, 0.0, atol=1e-12)  # orthogonal to the other centroid
    np.testing.assert_allclose(rows.intra, 1.0)
    assert summary["per_domain"]["a"]["inter_diversity"] == pytest.approx(1.0)
    assert summary["centroid_distance"][0][1] == pytest.approx(1.0)


def test_spread_domain_intra_and_summed_inter():
    # Domain 0 is spread over two axes: its centroid is (0.5, 0.5, 0), 45 degrees from each row.
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 2], [1, 1, 0]], dtype=float)
    labels = np.array([0, 0, 1, 1, 2])
    rows = row_measures(x, labels, 3)
    c = 1 / math.sqrt(2)
    np.testing.assert_allclose(rows.intra[:2], c)
    # Row (1,0,0): cos to centroid 1 (0,0,1.5) is 0, to centroid 2 (1,1,0) is c.
    assert rows.inter[0] == pytest.approx(c)
    # Row (1,1,0) of domain 2: cos to centroid 0 is 1, to centroid 1 is 0.
    assert rows.inter[4] == pytest.approx(1.0)
    summary = summarize(x, labels, ["a", "b", "c"])
    assert summary["per_domain"]["a"]["intra_diversity"] == pytest.approx(1 - c)
    assert summary["per_domain"]["b"]["intra_diversity"] == pytest.approx(0.0, abs=1e-12)
    assert summary["intra_diversity"] == pytest.approx(2 * (1 - c) / 5)
    # centroid pairs: a-b orthogonal (1), a-c identical direction (0), b-c orthogonal (1)
    assert summary["inter_diversity"] == pytest.approx(2 / 3)


def test_empty_domain_is_left_out_not_nan():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 2])
    cents = centroids(x, labels, 3)
    assert np.isnan(cents[1]).all()
    summary = summarize(x, labels, ["a", "b", "c"])
    assert summary["inter_diversity"] == pytest.approx(1.0)
    assert summary["per_domain"]["b"]["rows"] == 0
    assert summary["per_domain"]["b"]["intra_diversity"] is None
    assert summary["centroid_distance"][0][1] is None
    rows = row_measures(x, labels, 3)
    assert np.isfinite(rows.inter).all()


def test_bad_labels_are_refused():
    with pytest.raises(ValueError):
        summarize(np.ones((2, 2)), np.array([0, 5]), ["a", "b"])
    with pytest.raises(ValueError):
        row_measures(np.ones((2, 2)), np.array([0]))


def test_domain_mix_counts_and_entropy():
    mix = domain_mix(np.array([0, 0, 1, 1, 2, 2, 3, 3]), ["a", "b", "c", "d"])
    assert mix["counts"] == {"a": 2, "b": 2, "c": 2, "d": 2}
    assert mix["entropy"] == pytest.approx(math.log(4))
    assert mix["normalized_entropy"] == pytest.approx(1.0)
    skewed = domain_mix(np.array([1, 1, 1]), ["a", "b"])
    assert skewed["fractions"] == {"a": 0.0, "b": 1.0}
    assert skewed["entropy"] == pytest.approx(0.0)
    half = domain_mix(np.array([0, 0, 0, 1]), ["a", "b"])
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert half["entropy"] == pytest.approx(expected)
    assert half["normalized_entropy"] == pytest.approx(expected / math.log(2))


def test_kept_per_domain_accepts_mask_or_indices():
    labels = np.array([0, 0, 0, 1, 1])
    by_index = kept_per_domain(labels, np.array([0, 3, 4]), ["a", "b"])
    by_mask = kept_per_domain(labels, np.array([True, False, False, True, True]), ["a", "b"])
    assert by_index == by_mask
    assert by_index["a"] == {"pool": 3, "kept": 1, "fraction": pytest.approx(1 / 3)}
    assert by_index["b"]["fraction"] == 1.0


def test_encode_labels_sorted_names():
    codes, names = encode_labels(["math", "code", "math"])
    assert names == ["code", "math"]
    assert codes.tolist() == [1, 0, 1]
