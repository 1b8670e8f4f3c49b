"""Co-evolution rounds: the tuned learner becomes the next round's prober (`daar coevolve`).

Names are imported on first use, as in daar.tune: the rounds pull in the prober and the learner,
which would add seconds to every `daar` command.
"""

from __future__ import annotations

from daar.utils.lazy import lazy_exports

_EXPORTS = {
    "CoevolveConfig": "daar.coevolve.config",
    "CoevolveResult": "daar.coevolve.rounds",
    "Coevolution": "daar.coevolve.rounds",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
