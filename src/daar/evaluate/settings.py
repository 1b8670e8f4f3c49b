"""How a model is scored, as settings: what an experiment, a co-evolution and `daar eval` share.

The settings, the entry of the code whose source keys a cached score (SCORING_ENTRY), and the one headline metric
per task live here, below every command that evaluates, so none of them imports another for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daar.config import renamed
from daar.evaluate.registry import get_task

# The code behind a score is everything the evaluation package reaches (daar.utils.code.code_closure;
# the sandbox's launcher and program run as scripts, so the whole package is named): a cached score
# made by other code is computed again.
SCORING_ENTRY = ("daar.evaluate",)


class EvalSettings(BaseModel):
    """How models are scored: one set for every cell of an experiment (or round of a co-evolution), so
    their numbers compare."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[str] | str = "all"
    mode: Literal["generate", "nll"] = "generate"
    limit: int | None = Field(None, ge=1)
    data_dir: Path | None = None
    batch_size: int = Field(8, ge=1)
    # The seed of the benchmark subsample: fixed across cells (not the cell seed), so every model is
    # scored on the same items.
    items_seed: int = 42
    num_fewshot: int | None = Field(None, ge=0)
    max_gen_toks: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed(data, {"seed": "items_seed"}, "eval")

    def run(self, model: str, adapter: Path | None, device: str, out: Path) -> dict[str, Any]:
        """`daar eval` of `model` (+ `adapter`) with these settings; its report (per-task metrics)."""
        from daar.evaluate import evaluate

        return evaluate(
            model,
            adapter=adapter,
            tasks=self.tasks,
            mode=self.mode,
            limit=self.limit,
            data_dir=self.data_dir,
            device=device,
            batch_size=self.batch_size,
            seed=self.items_seed,
            out=out,
            num_fewshot=self.num_fewshot,
            max_gen_toks=self.max_gen_toks,
        )


def headline_metrics(tasks: list[str], mode: str) -> dict[str, str]:
    """The one metric per task that the table shows: NLL per token in nll mode, else the task's score."""
    return {t: "nll" if mode == "nll" else get_task(t).scored_as(mode).metric for t in tasks}
