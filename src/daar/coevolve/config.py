"""Settings of `daar coevolve`: the DaaR selection of every round, the learner, and the evaluation."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from daar.config import RUNTIME_KEYS, Runtime, SelectConfig, renamed, runtime_of
from daar.errors import UserError
from daar.evaluate.settings import EvalSettings
from daar.select.base import target_count
from daar.tune.settings import TuneConfig

# Per-round evaluation is cheap by default (NLL, 100 items per task); an `eval:` section or option
# that sets other keys keeps these for the keys it leaves out.
EVAL_DEFAULTS: dict[str, Any] = {"mode": "nll", "limit": 100}


class CoevolveConfig(Runtime):
    """Rounds of probe -> select -> tune (-> evaluate), the tuned learner probing the next round.

    The budget is `per_round` rows each round, or else the `select` ratio (or count) of the usable
    pool spread evenly over the rounds, so a co-evolved selection is the same size as a one-shot one.

    `learner: restart` (default) tunes the base afresh on the whole selection each round: the last
    round's model is then exactly "the base tuned on the selection", the same recipe as one-shot
    DaaR and every baseline, so a comparison measures the selection alone, and no row is trained on
    more epochs for having been picked early. `continue` goes on from the previous adapter.

    `examples: keep` (default) reuses round 1's domain examples and centroids: they live in e(x),
    the embedding layer, which LoRA on linear layers does not change, so only the example texts
    could differ, at the cost of generating again each round (docs/COEVOLVE.md has the measured
    comparison). `regenerate` lets each tuned model write its own; if it writes too few valid ones,
    the round falls back to the previous round's examples and records why.

    The runtime (device, dtype, seed, cache_dir: daar.config.Runtime) is set once, here at the top:
    it is the select and tune settings' runtime too, and the device of the evaluations.
    """

    model_config = ConfigDict(extra="forbid")
    select: SelectConfig = Field(default_factory=SelectConfig)
    rounds: int = Field(3, ge=1, le=100)
    per_round: int | None = Field(None, ge=1)
    learner: Literal["restart", "continue"] = "restart"
    examples: Literal["keep", "regenerate"] = "keep"
    tune: TuneConfig = Field(default_factory=TuneConfig)
    # None: no evaluation per round (the experiment evaluates the final selection itself)
    eval: EvalSettings | None = Field(default_factory=lambda: EvalSettings(**EVAL_DEFAULTS))

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed(data, {"seeds": "examples"}, "coevolve")

    @field_validator("eval", mode="before")
    @classmethod
    def _eval_defaults(cls, value: Any) -> Any:
        return {**EVAL_DEFAULTS, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _one_runtime(self) -> CoevolveConfig:
        """The top-level runtime is the select and tune settings' too; a different one set inside
        them would be silently overruled, so it is refused."""
        for part in ("select", "tune"):
            nested = getattr(self, part)
            clash = [k for k in RUNTIME_KEYS if k in nested.model_fields_set and getattr(nested, k) != getattr(self, k)]
            if clash:
                raise ValueError(f"{part}.{clash[0]}: set it once, at the top level (select, tune and eval share it)")
            setattr(self, part, nested.model_copy(update=runtime_of(self)))
        return self

    @model_validator(mode="after")
    def _daar_only(self) -> CoevolveConfig:
        if self.select.method != "daar":
            raise ValueError(f"co-evolution rounds select with DaaR; select.method is {self.select.method!r}")
        if self.select.adapter is not None:
            raise ValueError("select.adapter is set by each round (the previous round's learner)")
        return self

    def round_sizes(self, usable: int) -> list[int]:
        """Rows added per round: `per_round` each, or the total budget split evenly (the first
        rounds take the remainder). Every round must add a row and leave its probe at least one
        candidate per domain; a budget the pool cannot hold is a UserError before any work."""
        if self.per_round is not None:
            sizes = [self.per_round] * self.rounds
            asked = f"rounds {self.rounds} x per_round {self.per_round}"
        else:
            total = target_count(usable, self.select.ratio, self.select.count)
            sizes = [total // self.rounds + (1 if r < total % self.rounds else 0) for r in range(self.rounds)]
            asked = f"{total} rows over {self.rounds} rounds"
        k = len(self.select.domains)
        left = usable - sum(sizes[:-1])
        if min(sizes) < 1 or left < max(k, sizes[-1]):
            raise UserError(
                f"{asked} does not fit {usable} usable rows: every round needs at least one row, and the "
                f"last one at least {max(k, sizes[-1])} candidates left; use fewer rounds or rows per round"
            )
        return sizes

    def result_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())
