"""A budget in training tokens instead of rows, for every method.

Why: methods differ in the length of the rows they like (DaaR's reward prefers short rows: its
3,200 rows held about 422k training tokens against 466k for random ones), so a comparison at
equal rows is also a comparison at unequal training compute. A token budget keeps each method's
own order and takes its rows while they fit.

Tokens are counted as `daar tune` trains on them (daar.tune.tokens.TokenCounter): the learner's
tokenizer (the run's `model`), its template and the tuning default max_length, the whole dialogue
(prompt and response, or a chat row's every turn) together. "Exact to the row": the selection
holds at most the budget, and the method's selection of one more row would pass it (found by
bisection over the row count, so a method whose selection of n + 1 rows is not its selection of n
plus one, such as the balanced quotas, still gets the largest count that fits).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from daar.config import SelectConfig
from daar.errors import UserError
from daar.read import Record, read_pool


def budget_of(config: SelectConfig, count: Callable[[list[Record]], np.ndarray]) -> int | None:
    """The token budget of the settings: `budget_tokens`, or the tokens of `match_tokens`' selection
    counted by `count`; None when the budget is in rows."""
    if config.budget_tokens is not None:
        return config.budget_tokens
    if config.match_tokens is None:
        return None
    source = Path(config.match_tokens)
    path = source / "selected.jsonl" if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"match_tokens: {path} not found; give a finished run folder or its selected.jsonl")
    return int(count(read_pool(path, config.fields).records).sum())


def rows_within(budget: int, tokens: np.ndarray, choose: Callable[[int], np.ndarray], n_max: int) -> np.ndarray:
    """The method's selection of the most rows whose tokens fit `budget` (see the module docstring)."""

    def cost(n: int) -> int:
        return int(tokens[choose(n)].sum())

    if cost(n_max) <= budget:
        return choose(n_max)
    low, high = 0, n_max  # cost(low) <= budget < cost(high)
    while high - low > 1:
        middle = (low + high) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle
    return choose(low)
