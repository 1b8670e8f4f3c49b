"""Settings of `daar coevolve`: the DaaR selection of every round, the learner, and the evaluation."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daar.config import SelectConfig
from daar.experiment.config import EvalSettings
from daar.select.base import target_count
from daar.tune.settings import TuneConfig


class CoevolveConfig(BaseModel):
    """Rounds of probe -> select -> tune (-> evaluate), the tuned learner probing the next round.

    The budget is `per_round` rows each round, or else the `select` ratio (or count) of the usable
    pool spread evenly over the rounds, so a co-evolved selection is the same size as a one-shot one.

    `learner: restart` (default) tunes the base afresh on the whole selection each round: the last
    round's model is then exactly "the base tuned on the selection", the same recipe as one-shot
    DaaR and every baseline, so a comparison measures the selection alone, and no row is trained on
    more epochs for having been picked early. `continue` goes on from the previous adapter.

    `seeds: keep` (default) reuses round 1's seeds and centroids: they live in e(x), the embedding
    layer, which LoRA on linear layers does not change, so only the seed texts could differ, at the
    cost of generating again each round (docs/COEVOLVE.md has the measured comparison).
    `regenerate` lets each tuned model write its own; if it writes too few valid ones, the round
    falls back to the previous round's seeds and records why.
    """

    model_config = ConfigDict(extra="forbid")
    select: SelectConfig = Field(default_factory=SelectConfig)
    rounds: int = Field(3, ge=1, le=100)
    per_round: int | None = Field(None, ge=1)
    learner: Literal["restart", "continue"] = "restart"
    seeds: Literal["keep", "regenerate"] = "keep"
    tune: TuneConfig = Field(default_factory=TuneConfig)
    # None: no evaluation per round (the experiment evaluates the final selection itself)
    eval: EvalSettings | None = Field(default_factory=lambda: EvalSettings(mode="nll", limit=100))
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _daar_only(self) -> CoevolveConfig:
        if self.select.method != "daar":
            raise ValueError(f"co-evolution rounds select with DaaR; select.method is {self.select.method!r}")
        if self.select.adapter is not None:
            raise ValueError("select.adapter is set by each round (the previous round's learner)")
        return self

    def round_sizes(self, usable: int) -> list[int]:
        """Rows added per round: `per_round` each, or the total budget split evenly (the first
        rounds take the remainder); never more than the pool holds."""
        if self.per_round is not None:
            sizes = [self.per_round] * self.rounds
        else:
            total = target_count(usable, self.select.ratio, self.select.count)
            sizes = [total // self.rounds + (1 if r < total % self.rounds else 0) for r in range(self.rounds)]
        left, result = usable, []
        for size in sizes:
            result.append(min(size, left))
            left -= result[-1]
        return result

    def result_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())
