"""Co-evolution rounds: the tuned learner becomes the next round's prober (`daar coevolve`)."""

from daar.coevolve.config import CoevolveConfig
from daar.coevolve.rounds import Coevolution, CoevolveResult

__all__ = ["CoevolveConfig", "CoevolveResult", "Coevolution"]
