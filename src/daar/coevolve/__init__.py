"""Co-evolution rounds: the tuned learner becomes the next round's prober (`daar coevolve`).

Names are imported on first use, as in daar.tune: the rounds pull in the prober and the learner,
which would add seconds to every `daar` command.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CoevolveConfig": "daar.coevolve.config",
    "CoevolveResult": "daar.coevolve.rounds",
    "Coevolution": "daar.coevolve.rounds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'daar.coevolve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
