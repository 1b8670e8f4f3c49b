"""The benchmark tasks, declared as data, and the reading of their local files.

Each task is one `TaskSpec` row: which file under the benchmark folder it reads, how many items
the paper scores (a seeded subsample), which rows form the test split, where few-shot examples
come from, and which `kind` of prompt/metric applies. The prompt and metric code for each kind
lives in `daar.evaluate.kinds`; nothing here imports lm-eval or torch, so listing tasks and
validating names is instant (the CLI calls this before loading any model).

Subsampling: the test rows are shuffled with `random.Random(seed)` and the first `size` taken,
so a `limit` is itself a seeded random subset (MMLU's first 50 rows would all be one subject).
"""

from __future__ import annotations

import difflib
import gzip
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daar.errors import UserError
from daar.evaluate.kinds import TaskKind, get_kind

ENV_BENCH_DIR = "DAAR_BENCH_DIR"


class EvalError(UserError):
    """A task name, data file or setting is wrong; the message says what to do."""


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark: its local file, default subsample size (None = all rows) and prompt kind."""

    name: str
    file: str
    kind: str  # a registered daar.evaluate.kinds.TaskKind
    size: int | None
    description: str
    fewshot_file: str | None = None
    default_fewshot: int = 0
    # MBPP: the customary split is by task_id (test 11-510, few-shot prompts 1-10).
    id_range: tuple[int, int] | None = None
    fewshot_ids: tuple[int, ...] = ()
    max_gen_toks: int = 256

    def __post_init__(self) -> None:
        get_kind(self.kind)  # an unknown kind fails where the task is declared

    @property
    def choice(self) -> bool:
        """Scored by log-likelihood choice among options (same in both modes)."""
        return get_kind(self.kind).choice

    def scored_as(self, mode: str) -> TaskKind:
        """The kind that scores this task in `mode` (MMLU: its cloze form in `nll` mode)."""
        return get_kind(self.kind).in_mode(mode)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("nq", "nq_open.jsonl.gz", "qa", 3610, "NQ-open dev: exact match on any alias", max_gen_toks=32),
        TaskSpec("triviaqa", "triviaqa_dev.jsonl.gz", "qa", 5000, "TriviaQA dev: exact match", max_gen_toks=32),
        TaskSpec("hellaswag", "hellaswag_val.jsonl.gz", "hellaswag", 10042, "HellaSwag val: choice accuracy"),
        TaskSpec("gsm8k", "gsm8k_test.jsonl.gz", "gsm8k", 500, "GSM8K test: last number = target"),
        TaskSpec("math", "math_test.jsonl.gz", "math", 1000, "MATH test: boxed answer", max_gen_toks=384),
        TaskSpec(
            "mbpp",
            "mbpp.jsonl.gz",
            "mbpp",
            500,
            "MBPP test (task_id 11-510): pass@1",
            fewshot_file="mbpp.jsonl.gz",
            default_fewshot=3,
            id_range=(11, 510),
            # Austin et al. (2021) prompt with tasks 2, 3 and 4; any of 1-10 may be used.
            fewshot_ids=(2, 3, 4, 1, 5, 6, 7, 8, 9, 10),
            max_gen_toks=384,
        ),
        TaskSpec("humaneval", "humaneval.jsonl.gz", "humaneval", 164, "HumanEval: pass@1", max_gen_toks=384),
        TaskSpec(
            "mmlu",
            "mmlu_test.jsonl.gz",
            "mmlu",
            None,
            "MMLU test (57 subjects): choice accuracy",
            fewshot_file="mmlu_dev.jsonl.gz",
        ),
    )
}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a benchmark (a file under the benchmark folder and a registered kind) to the known tasks."""
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The spec for `name`, or an error that suggests the closest known names."""
    key = name.strip().lower()
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise EvalError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}")


def parse_tasks(tasks: str | list[str]) -> list[TaskSpec]:
    """Task specs from a list or a comma-separated string; 'all' means every task; duplicates dropped."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise EvalError(f"no task given; known tasks: {', '.join(TASKS)}")
    if any(n.lower() == "all" for n in names):
        return list(TASKS.values())
    specs: list[TaskSpec] = []
    for name in names:
        spec = get_task(name)
        if spec not in specs:
            specs.append(spec)
    return specs


def resolve_data_dir(data_dir: Path | str | None = None, start: Path | None = None) -> Path:
    """The benchmark folder: `data_dir`, else $DAAR_BENCH_DIR, else `shared/data/bench` above the cwd.

    The walk-up checks `<dir>/shared/data/bench` for the cwd and each of its parents, so a run from
    the repository (`/work/main`) finds the shared data next to it (`/work/shared/data/bench`).
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise EvalError(f"benchmark folder {path} does not exist (given as data_dir / --data-dir)")
        return path
    env = os.environ.get(ENV_BENCH_DIR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise EvalError(f"benchmark folder {path} does not exist (from ${ENV_BENCH_DIR})")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data" / "bench"
        if candidate.is_dir():
            return candidate
    raise EvalError(
        f"no benchmark folder found: pass --data-dir, set ${ENV_BENCH_DIR}, or run from a directory "
        f"with shared/data/bench above it (searched from {here})"
    )


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    """All rows of a gzip JSON-lines file, with a clear error naming a missing or broken file."""
    if not path.is_file():
        raise EvalError(f"benchmark file {path} is missing (expected in the benchmark folder)")
    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    rows.append(json.loads(line))
    except (OSError, json.JSONDecodeError) as err:
        raise EvalError(f"{path}: cannot read line {len(rows) + 1} as gzip JSON lines: {err}") from err
    return rows


def select_rows(rows: list[dict[str, Any]], size: int | None, limit: int | None, seed: int) -> list[int]:
    """Positions of the scored rows: a seeded shuffle, cut to min(size, limit) (None = no cut)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = len(order)
    for bound in (size, limit):
        if bound is not None:
            cut = min(cut, bound)
    return order[:cut]


def load_task_rows(spec: TaskSpec, bench_dir: Path, limit: int | None = None, seed: int = 42) -> list[dict[str, Any]]:
    """The test rows this task scores, each with `_row` (its position in the file) added."""
    if limit is not None and limit < 1:
        raise EvalError(f"limit must be at least 1, got {limit}")
    rows = read_jsonl_gz(bench_dir / spec.file)
    if spec.id_range is not None:
        low, high = spec.id_range
        rows = [r for r in rows if low <= int(r["task_id"]) <= high]
    for position, row in enumerate(rows):
        row["_row"] = position
    return [rows[i] for i in select_rows(rows, spec.size, limit, seed)]


def load_fewshot_rows(spec: TaskSpec, bench_dir: Path) -> list[dict[str, Any]]:
    """Rows that few-shot prompts may show (MBPP task_ids 1-10 in spec order; MMLU dev)."""
    if spec.fewshot_file is None:
        return []
    rows = read_jsonl_gz(bench_dir / spec.fewshot_file)
    if spec.fewshot_ids:
        by_id = {int(r["task_id"]): r for r in rows}
        return [by_id[i] for i in spec.fewshot_ids if i in by_id]
    return rows
