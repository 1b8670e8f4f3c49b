"""The diversity reward (docs/METHOD.md, step 6): how undecided the domain probe is about a row.

A row the probe places firmly in one domain gets H near 0; a row it sees as lying between
domains gets H near log K. The reward model (a regression head, daar.probe.heads) learns to
predict H from f(x) so that every pool row gets a reward, not only the probe set.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def entropy(probs: np.ndarray) -> np.ndarray:
    """H = -sum p log p in nats; 0 log 0 counts as 0, so the maximum is log K."""
    p = np.clip(probs, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(1)
