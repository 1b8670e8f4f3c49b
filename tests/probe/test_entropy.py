"""The diversity reward: entropy of the probe's softmax, in nats."""

from __future__ import annotations

import numpy as np

from daar.probe.entropy import entropy, softmax


def test_entropy_bounds_and_known_values():
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    assert np.allclose(entropy(probs), [0.0, np.log(3), np.log(2)])


def test_softmax_is_stable_for_large_logits():
    probs = softmax(np.array([[1000.0, 1000.0], [0.0, -1000.0]]))
    assert np.allclose(probs, [[0.5, 0.5], [1.0, 0.0]])
    assert np.allclose(probs.sum(1), 1.0)
