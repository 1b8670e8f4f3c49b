"""Prompts, reference answers and per-item scores for each kind of task.

Every prompt is plain text (no chat template), the same in both modes, so that the `nll` score
of the reference and the `generate` score of a free answer look at the same question:

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
- mmlu_cloze (MMLU in `nll` mode): the header, then "Question: <q>\nAnswer:"; the choices are the
  answer texts themselves, so the NLL reported is that of the full right answer. A single letter's
  NLL says how the model spreads its mass over four letters, not whether it knows the answer: at
  135M MMLU accuracy is at chance, and in the first study that letter's NLL moved the benchmark
  average most (docs/EVIDENCE.md, section 5).
"""

from __future__ import annotations

from typing import Any

from daar.evaluate import metrics
from daar.evaluate.registry import TaskSpec

LETTERS = ("A", "B", "C", "D")

# Where a free answer ends; lm-eval cuts the generation at the first of these.
STOP_SEQUENCES: dict[str, list[str]] = {
    "qa": ["\n", ".", ","],
    "gsm8k": ["Question:", "\n\nProblem", "\n\n\n"],
    "math": ["Problem:", "\n\n\n"],
    "mbpp": ["[DONE]", "\n\n\n\n"],
    "humaneval": ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"],
}


def _mbpp_block(row: dict[str, Any]) -> str:
    tests = "\n".join(row["test_list"])
    return (
        f"You are an expert Python programmer, and here is your task: {row['text']} "
        f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
    )


def _mmlu_block(row: dict[str, Any]) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"], strict=False))
    return f"{row['question'].strip()}{options}\nAnswer:"


def build_prompt(spec: TaskSpec, row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """The context given to the model for `row`; `shots` are the few-shot rows to show first."""
    kind = spec.kind
    if kind == "qa":
        return f"Question: {row['question'].strip().rstrip('?')}?\nAnswer:"
    if kind == "gsm8k":
        return f"Question: {row['question']}\nAnswer:"
    if kind == "math":
        return f"Problem: {row['problem']}\nPut the final answer in \\boxed{{}}.\nSolution:"
    if kind == "mbpp":
        examples = "".join(_mbpp_block(s) + s["code"].replace("\r\n", "\n").strip() + "\n[DONE]\n\n" for s in shots)
        return examples + _mbpp_block(row)
    if kind == "humaneval":
        return row["prompt"]
    if kind == "hellaswag":
        return f"{row['activity_label']}: {row['ctx']}"
    if kind == "mmlu":
        subject = row["subject"].replace("_", " ")
        header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        examples = "".join(f"{_mmlu_block(s)} {s['answer']}\n\n" for s in shots)
        return header + examples + _mmlu_block(row)
    if kind == "mmlu_cloze":
        subject = row["subject"].replace("_", " ")
        header = f"The following are questions (with answers) about {subject}.\n\n"
        examples = "".join(f"{_cloze_block(s)} {s['choices'][LETTERS.index(s['answer'])]}\n\n" for s in shots)
        return header + examples + _cloze_block(row)
    raise ValueError(f"no prompt for task kind {kind!r}")


def _cloze_block(row: dict[str, Any]) -> str:
    return f"Question: {row['question'].strip()}\nAnswer:"


def in_mode(spec: TaskSpec, mode: str) -> TaskSpec:
    """The task as scored in `mode`: MMLU in `nll` mode is its cloze form (see the module docstring)."""
    from dataclasses import replace

    return replace(spec, kind="mmlu_cloze") if mode == "nll" and spec.kind == "mmlu" else spec


def pick_shots(spec: TaskSpec, row: dict[str, Any], pool: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The first `k` few-shot rows for `row` (MMLU: of the same subject), never the row itself."""
    if k <= 0:
        return []
    if spec.kind in ("mmlu", "mmlu_cloze"):
        pool = [s for s in pool if s["subject"] == row["subject"]]
    return [s for s in pool if s is not row][:k]


def reference(spec: TaskSpec, row: dict[str, Any]) -> str:
    """The continuation whose per-token NLL `nll` mode reports (see module docstring)."""
    kind = spec.kind
    if kind == "qa":
        return " " + metrics.first_readable(row["answers"])
    if kind == "gsm8k":
        return " " + row["answer"]
    if kind == "math":
        return " " + row["solution"]
    if kind == "mbpp":
        return row["code"].replace("\r\n", "\n")
    if kind == "humaneval":
        return row["canonical_solution"]
    if kind == "hellaswag":
        return " " + row["endings"][int(row["label"])]
    if kind == "mmlu":
        return " " + row["answer"]
    if kind == "mmlu_cloze":
        return " " + row["choices"][LETTERS.index(row["answer"])]
    raise ValueError(f"no reference for task kind {kind!r}")


def choices(spec: TaskSpec, row: dict[str, Any]) -> list[str]:
    """Options of a choice task (the harness puts a space between context and option)."""
    if spec.kind == "mmlu_cloze":
        return list(row["choices"])
    return list(row["endings"]) if spec.kind == "hellaswag" else list(LETTERS)


def gold_index(spec: TaskSpec, row: dict[str, Any]) -> int:
    return int(row["label"]) if spec.kind == "hellaswag" else LETTERS.index(row["answer"])


def score_generation(spec: TaskSpec, row: dict[str, Any], generation: str, run_code: Any = None) -> dict[str, float]:
    """Per-item metric of one free answer: exact_match (qa, gsm8k, math) or pass_at_1 (code).

    `run_code(check) -> bool` runs a `metrics.CodeCheck` (code, then its tests) in the sandbox; it
    is injected so this module never runs code itself.
    """
    kind = spec.kind
    if kind == "qa":
        return {"exact_match": float(metrics.qa_exact_match(generation, row["answers"]))}
    if kind == "gsm8k":
        return {"exact_match": float(metrics.gsm8k_correct(generation, row["target"]))}
    if kind == "math":
        return {"exact_match": float(metrics.math_correct(generation, row["target"]))}
    if kind in ("mbpp", "humaneval"):
        if run_code is None:
            raise ValueError("code tasks need a sandbox runner")
        if kind == "mbpp":
            check = metrics.mbpp_check(metrics.extract_code(generation), row)
        else:
            check = metrics.humaneval_check(generation, row)
        return {"pass_at_1": float(bool(run_code(check)))}
    raise ValueError(f"task kind {kind!r} is not scored by generation")


def generation_metric(spec: TaskSpec) -> str:
    """Name of the headline metric of a task in `generate` mode."""
    if spec.choice:
        return "acc_norm" if spec.kind == "hellaswag" else "acc"
    return "pass_at_1" if spec.kind in ("mbpp", "humaneval") else "exact_match"
