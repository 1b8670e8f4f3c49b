"""Benchmark evaluation of base and tuned models (docs/METHOD.md, step 10).

`evaluate()` runs the tasks of `TASKS` (local files, seeded subsamples) on lm-evaluation-harness
in one of two modes: `generate` (exact match / pass@1 / choice accuracy) or `nll` (per-token NLL
of the reference answers). Generated code runs only in `daar.evaluate.sandbox`.
"""

from daar.evaluate.registry import TASKS, EvalError, TaskSpec, get_task, parse_tasks, resolve_data_dir
from daar.evaluate.runner import evaluate

__all__ = ["TASKS", "EvalError", "TaskSpec", "evaluate", "get_task", "parse_tasks", "resolve_data_dir"]
