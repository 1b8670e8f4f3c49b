"""Each task's lm-eval task, built from its local file, scores hand-made answers correctly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daar.evaluate import harness
from daar.evaluate.metrics import CodeCheck
from daar.evaluate.registry import TASKS, get_task, load_fewshot_rows, load_task_rows
from daar.evaluate.sandbox import run_python

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "bench"))


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from daar.models import load_tokenizer

    return load_tokenizer(tiny_model)


def _task(name: str, mode: str, tokenizer, shots: int = 0):
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    harness.go_offline()
    spec = get_task(name)
    rows = load_task_rows(spec, BENCH, limit=2)
    docs = harness.build_docs(spec, rows, load_fewshot_rows(spec, BENCH), shots, tokenizer, mode)

    def run_code(check: CodeCheck) -> bool:
        return run_python(check.code, timeout=10, tests=check.tests, shared=check.shared).passed

    return spec, rows, docs, harness.build_task(spec, rows, docs, mode, run_code)


def _right_answer(name: str, row: dict) -> str:
    if name in ("nq", "triviaqa"):
        return f" {row['answers'][0]}\nQuestion: something else"
    if name == "gsm8k":
        return f" Step by step... so she earns {row['target']:,} in total.\n\n"
    if name == "math":
        return f" We compute things. The answer is $\\boxed{{{row['target']}}}$."
    if name == "mbpp":
        return row["code"] + "\n[DONE]"
    return row["canonical_solution"]


WRONG = {
    "nq": " zzzz qqqq",
    "triviaqa": " zzzz qqqq",
    "gsm8k": " The answer is 987654321.",
    "math": " \\boxed{987654321}",
    "mbpp": "def unrelated():\n    return 0\n",
    "humaneval": "    return None\n",
}
MALFORMED = {
    "nq": "",
    "triviaqa": "\n\n",
    "gsm8k": " I cannot tell.",
    "math": " \\boxed{12",
    "mbpp": "def broken(:\n",
    "humaneval": "    return (\n",
}


@pytest.mark.parametrize("name", [n for n, s in TASKS.items() if not s.choice])
def test_generation_tasks_score_right_wrong_malformed(name: str, tokenizer) -> None:
    spec, rows, docs, task = _task(name, "generate", tokenizer)
    metric = "pass_at_1" if name in ("mbpp", "humaneval") else "exact_match"
    for doc, row in zip(docs, rows, strict=True):
        assert task.process_results(doc, [_right_answer(name, row)]) == {metric: 1.0}, row
        assert task.process_results(doc, [WRONG[name]]) == {metric: 0.0}
        assert task.process_results(doc, [MALFORMED[name]]) == {metric: 0.0}


@pytest.mark.parametrize("name", ["hellaswag", "mmlu"])
def test_choice_tasks_score_by_loglikelihood(name: str, tokenizer) -> None:
    spec, rows, docs, task = _task(name, "generate", tokenizer)
    for doc in docs:
        gold = doc["_gold"]
        right = [(-1.0 if i == gold else -9.0, False) for i in range(4)]
        wrong = [(-1.0 if i == (gold + 1) % 4 else -9.0, False) for i in range(4)]
        scored = task.process_results(doc, right)
        assert scored["acc"] == 1.0 and scored["nll"] == (-1.0, doc["_ntok"])
        assert task.process_results(doc, wrong)["acc"] == 0.0


def test_nll_task_pairs_loglikelihood_with_token_count(tokenizer) -> None:
    spec, rows, docs, task = _task("gsm8k", "nll", tokenizer)
    assert task.OUTPUT_TYPE == "loglikelihood"
    doc = docs[0]
    assert doc["_reference"] == " " + rows[0]["answer"]
    assert task.process_results(doc, [(-42.0, False)]) == {"nll": (-42.0, doc["_ntok"])}
    assert harness.token_mean_nll([(-10.0, 4), (-2.0, 1)]) == pytest.approx(2.4)


def test_fewshot_prompts(tokenizer) -> None:
    _, rows, docs, _ = _task("mbpp", "generate", tokenizer, shots=3)
    prompt = docs[0]["_prompt"]
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3
    _, rows, docs, _ = _task("mmlu", "generate", tokenizer, shots=2)
    for doc, row in zip(docs, rows, strict=True):
        assert doc["_prompt"].count("\nAnswer:") == 3
        assert row["subject"].replace("_", " ") in doc["_prompt"]


def test_count_continuation_tokens_moves_trailing_space(tokenizer) -> None:
    assert harness.count_continuation_tokens(tokenizer, "Question: x?\nAnswer:", " Paris") == len(
        tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    )
    assert harness.count_continuation_tokens(tokenizer, "Answer: ", "Paris") == harness.count_continuation_tokens(
        tokenizer, "Answer:", " Paris"
    )


def test_mmlu_in_nll_mode_scores_the_full_answer_text(tokenizer) -> None:
    """A single letter's NLL is never an outcome: in nll mode MMLU is its cloze form."""
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    spec = get_task("mmlu")
    assert spec.scored_as("nll").name == "mmlu_cloze" and spec.scored_as("nll").choice
    assert spec.scored_as("generate").name == "mmlu"
    rows = load_task_rows(spec, BENCH, limit=3)
    docs = harness.build_docs(spec, rows, [], 0, tokenizer, "nll")
    task = harness.build_task(spec, rows, docs, "nll")
    for doc, row in zip(docs, rows, strict=True):
        answer = row["choices"]["ABCD".index(row["answer"])]
        assert doc["_reference"] == " " + answer
        assert doc["_prompt"].endswith(f"Question: {row['question'].strip()}\nAnswer:")
        assert "\nA. " not in doc["_prompt"]  # the options are not listed: the model writes the answer itself
        assert doc["_ntok"] == len(tokenizer(" " + answer, add_special_tokens=False)["input_ids"])
        assert task.doc_to_choice(doc) == list(row["choices"])
        gold = doc["_gold"]
        right = [(-1.0 if i == gold else -9.0, False) for i in range(4)]
        assert task.process_results(doc, right) == {"acc": 1.0, "acc_norm": 1.0, "nll": (-1.0, doc["_ntok"])}
