"""Task kinds: how a benchmark's rows become a prompt, a reference, options, stops and a score.

One class per kind, registered by name, so a new kind of benchmark is one class (and a TaskSpec
that names it: daar.evaluate.registry.register_task); the harness and the runner ask the kind and
never test its name. Every prompt is plain text (no chat template), the same in both modes, so
that the `nll` score of the reference and the `generate` score of a free answer look at the same
question:

- qa (NQ, TriviaQA): "Question: <q>?\\nAnswer:"; reference " <first readable alias>".
- gsm8k: "Question: <q>\\nAnswer:"; reference " <answer>" verbatim (with its <<...>> calculator
  annotations and "#### N" line, as in the GSM8K release and in the training pool).
- math: "Problem: <p>\\nPut the final answer in \\boxed{}.\\nSolution:"; reference " <solution>".
- mbpp: the MBPP paper's prompt (task text, its 3 asserts, "[BEGIN]"), after `k` solved examples
  (task_ids 2, 3, 4 by default) that end in "[DONE]"; reference the task's code.
- humaneval: the benchmark prompt; reference the canonical solution.
- hellaswag: "<activity>: <context>" continued by each of the 4 endings.
- mmlu: the MMLU header for the subject, `k` dev questions of the same subject with their
  letters, then the question; the choices are the letters " A".." D".
- mmlu_cloze (MMLU in `nll` mode): the header, then "Question: <q>\\nAnswer:"; the choices are the
  answer texts themselves, so the NLL reported is that of the full right answer. A single letter's
  NLL says how the model spreads its mass over four letters, not whether it knows the answer: at
  135M MMLU accuracy is at chance, and in the first study that letter's NLL moved the benchmark
  average most (docs/EVIDENCE.md, section 5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from daar.evaluate import metrics

LETTERS = ("A", "B", "C", "D")
RunCode = Callable[[metrics.CodeCheck], bool]


class TaskKind:
    """The contract of a kind. Generation kinds give `prompt`, `reference`, `stops` and `score`;
    choice kinds (`choice` True) give `options` and `gold` instead of `stops` and `score`."""

    name: ClassVar[str]
    choice: ClassVar[bool] = False
    runs_code: ClassVar[bool] = False  # its answers are programs, run only in the sandbox
    stops: ClassVar[tuple[str, ...]] = ()  # where a free answer ends (lm-eval cuts at the first)
    metric: ClassVar[str] = "exact_match"  # the headline metric in `generate` mode

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def reference(self, row: dict[str, Any]) -> str:
        """The continuation whose per-token NLL `nll` mode reports."""
        raise NotImplementedError

    def shots(self, row: dict[str, Any], pool: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        """The first `k` few-shot rows for `row`, never the row itself."""
        return [s for s in pool if s is not row][: max(k, 0)]

    def options(self, row: dict[str, Any]) -> list[str]:
        raise NotImplementedError(f"{self.name} is not a choice task")

    def gold(self, row: dict[str, Any]) -> int:
        raise NotImplementedError(f"{self.name} is not a choice task")

    def score(self, row: dict[str, Any], generation: str, run_code: RunCode | None = None) -> dict[str, float]:
        raise NotImplementedError(f"{self.name} is not scored by generation")

    def in_mode(self, mode: str) -> TaskKind:
        """The kind as scored in `mode` (itself, unless a mode needs another form)."""
        return self


KINDS: dict[str, TaskKind] = {}


def register_kind(cls: type[TaskKind]) -> type[TaskKind]:
    KINDS[cls.name] = cls()
    return cls


def get_kind(name: str) -> TaskKind:
    if name not in KINDS:
        raise ValueError(f"unknown task kind {name!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[name]


@register_kind
class QA(TaskKind):
    name = "qa"
    stops = ("\n", ".", ",")

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        return f"Question: {row['question'].strip().rstrip('?')}?\nAnswer:"

    def reference(self, row: dict[str, Any]) -> str:
        return " " + metrics.first_readable(row["answers"])

    def score(self, row: dict[str, Any], generation: str, run_code: RunCode | None = None) -> dict[str, float]:
        return {"exact_match": float(metrics.qa_exact_match(generation, row["answers"]))}


@register_kind
class GSM8K(TaskKind):
    name = "gsm8k"
    stops = ("Question:", "\n\nProblem", "\n\n\n")

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        return f"Question: {row['question']}\nAnswer:"

    def reference(self, row: dict[str, Any]) -> str:
        return " " + row["answer"]

    def score(self, row: dict[str, Any], generation: str, run_code: RunCode | None = None) -> dict[str, float]:
        return {"exact_match": float(metrics.gsm8k_correct(generation, row["target"]))}


@register_kind
class Math(TaskKind):
    name = "math"
    stops = ("Problem:", "\n\n\n")

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        return f"Problem: {row['problem']}\nPut the final answer in \\boxed{{}}.\nSolution:"

    def reference(self, row: dict[str, Any]) -> str:
        return " " + row["solution"]

    def score(self, row: dict[str, Any], generation: str, run_code: RunCode | None = None) -> dict[str, float]:
        return {"exact_match": float(metrics.math_correct(generation, row["target"]))}


class CodeKind(TaskKind):
    """A kind whose answers are programs: pass@1 by running them (`run_code`, injected so this module
    never runs code itself; the sandbox does)."""

    runs_code = True
    metric = "pass_at_1"

    def check(self, row: dict[str, Any], generation: str) -> metrics.CodeCheck:
        raise NotImplementedError

    def score(self, row: dict[str, Any], generation: str, run_code: RunCode | None = None) -> dict[str, float]:
        if run_code is None:
            raise ValueError("code tasks need a sandbox runner")
        return {"pass_at_1": float(bool(run_code(self.check(row, generation))))}


def _mbpp_block(row: dict[str, Any]) -> str:
    tests = "\n".join(row["test_list"])
    return (
        f"You are an expert Python programmer, and here is your task: {row['text']} "
        f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
    )


@register_kind
class MBPP(CodeKind):
    name = "mbpp"
    stops = ("[DONE]", "\n\n\n\n")

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        examples = "".join(_mbpp_block(s) + s["code"].replace("\r\n", "\n").strip() + "\n[DONE]\n\n" for s in shots)
        return examples + _mbpp_block(row)

    def reference(self, row: dict[str, Any]) -> str:
        return row["code"].replace("\r\n", "\n")

    def check(self, row: dict[str, Any], generation: str) -> metrics.CodeCheck:
        return metrics.mbpp_check(metrics.extract_code(generation), row)


@register_kind
class HumanEval(CodeKind):
    name = "humaneval"
    stops = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        return row["prompt"]

    def reference(self, row: dict[str, Any]) -> str:
        return row["canonical_solution"]

    def check(self, row: dict[str, Any], generation: str) -> metrics.CodeCheck:
        return metrics.humaneval_check(generation, row)


@register_kind
class HellaSwag(TaskKind):
    name = "hellaswag"
    choice = True
    metric = "acc_norm"

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        return f"{row['activity_label']}: {row['ctx']}"

    def reference(self, row: dict[str, Any]) -> str:
        return " " + row["endings"][int(row["label"])]

    def options(self, row: dict[str, Any]) -> list[str]:
        return list(row["endings"])

    def gold(self, row: dict[str, Any]) -> int:
        return int(row["label"])


def _mmlu_header(row: dict[str, Any], what: str) -> str:
    return f"The following are {what} about {row['subject'].replace('_', ' ')}.\n\n"


def _lettered(row: dict[str, Any]) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"], strict=False))
    return f"{row['question'].strip()}{options}\nAnswer:"


def _cloze(row: dict[str, Any]) -> str:
    return f"Question: {row['question'].strip()}\nAnswer:"


@register_kind
class MMLU(TaskKind):
    name = "mmlu"
    choice = True
    metric = "acc"

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        examples = "".join(f"{_lettered(s)} {s['answer']}\n\n" for s in shots)
        return _mmlu_header(row, "multiple choice questions (with answers)") + examples + _lettered(row)

    def reference(self, row: dict[str, Any]) -> str:
        return " " + row["answer"]

    def shots(self, row: dict[str, Any], pool: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        return super().shots(row, [s for s in pool if s["subject"] == row["subject"]], k)

    def options(self, row: dict[str, Any]) -> list[str]:
        return list(LETTERS)

    def gold(self, row: dict[str, Any]) -> int:
        return LETTERS.index(row["answer"])

    def in_mode(self, mode: str) -> TaskKind:
        return KINDS["mmlu_cloze"] if mode == "nll" else self


@register_kind
class MMLUCloze(MMLU):
    name = "mmlu_cloze"

    def prompt(self, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        examples = "".join(f"{_cloze(s)} {s['choices'][LETTERS.index(s['answer'])]}\n\n" for s in shots)
        return _mmlu_header(row, "questions (with answers)") + examples + _cloze(row)

    def reference(self, row: dict[str, Any]) -> str:
        return " " + row["choices"][self.gold(row)]

    def options(self, row: dict[str, Any]) -> list[str]:
        return list(row["choices"])

    def in_mode(self, mode: str) -> TaskKind:
        return self
