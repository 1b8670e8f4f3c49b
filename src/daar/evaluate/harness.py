"""The benchmarks as lm-evaluation-harness tasks, built in Python from the local files.

Why Python task configs rather than YAML: each task's rows are the seeded subsample read from
`../shared/data/bench` (never the hub), and its metric needs values only known at run time (the
tokenizer for token counts in `nll` mode, the sandbox for code). `TaskConfig.custom_dataset`
hands lm-eval an in-memory `datasets.Dataset`, so `datasets.load_dataset` is never called.

What lm-eval does here: batching and length-sorting of requests, log-likelihoods (with its
trailing-space and context-truncation rules), greedy generation with stop sequences, few-shot
free contexts, per-item `process_results` and aggregation. Scoring rules are ours
(`daar.evaluate.kinds` / `metrics`); code runs only in `daar.evaluate.sandbox`, never through
lm-eval's `code_eval`.

Modes:
- generate: free answers scored by exact match / pass@1; choice tasks by log-likelihood choice.
- nll: the reference answer's negative log-likelihood per token given the prompt, summed over
  items then divided by their total token count (corpus-level, like perplexity; `ppl` = exp).
  Choice tasks report their accuracy plus the NLL of the gold option.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable
from typing import Any, Literal

from daar.evaluate.metrics import CodeCheck
from daar.evaluate.registry import TaskSpec

Mode = Literal["generate", "nll"]
# Nothing may come from the hub during an evaluation.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def go_offline() -> None:
    """Make the Hugging Face clients refuse network access (set before lm-eval is imported)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def count_continuation_tokens(tokenizer: Any, context: str, continuation: str) -> int:
    """Tokens lm-eval scores for `continuation` after `context`.

    Mirrors its causal-model rule: trailing whitespace of the context moves to the continuation,
    then the count is len(tokens(context + continuation)) - len(tokens(context)).
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    head = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    return max(1, len(whole) - len(head))


def token_mean_nll(items: list[tuple[float, int]]) -> float:
    """Aggregate (log-likelihood, tokens) pairs into NLL per token over all items."""
    tokens = sum(n for _, n in items)
    return -sum(ll for ll, _ in items) / max(tokens, 1)


def _item_id(spec: TaskSpec, row: dict[str, Any]) -> str:
    """The benchmark's own id where it has one (MBPP, HumanEval), else `<task>/<row in file>`."""
    if "task_id" in row:
        return str(row["task_id"])
    return f"{spec.name}/{row['_row']}"


def build_docs(
    spec: TaskSpec,
    rows: list[dict[str, Any]],
    shots_pool: list[dict[str, Any]],
    num_fewshot: int,
    tokenizer: Any,
    mode: Mode,
) -> list[dict[str, Any]]:
    """The flat documents lm-eval iterates: index into `rows`, prompt, reference and token count.

    Only scalar fields go to lm-eval (an Arrow table); the full row stays in `rows`.
    """
    kind = spec.scored_as(mode)
    docs = []
    for i, row in enumerate(rows):
        prompt = kind.prompt(row, kind.shots(row, shots_pool, num_fewshot))
        ref = kind.reference(row)
        needs_count = mode == "nll" or kind.choice
        docs.append(
            {
                "_i": i,
                "id": _item_id(spec, row),
                "_prompt": prompt,
                "_reference": ref,
                "_gold": kind.gold(row) if kind.choice else -1,
                "_ntok": count_continuation_tokens(tokenizer, prompt, ref) if needs_count else 0,
            }
        )
    return docs


def build_task(
    spec: TaskSpec,
    rows: list[dict[str, Any]],
    docs: list[dict[str, Any]],
    mode: Mode,
    run_code: Callable[[CodeCheck], bool] | None = None,
    max_gen_toks: int | None = None,
):
    """One lm-eval `ConfigurableTask` over `docs` for the given mode (`max_gen_toks` caps answers)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    kind = spec.scored_as(mode)
    dataset = datasets.Dataset.from_list(docs)
    base: dict[str, Any] = {
        "task": f"daar_{spec.name}",
        "custom_dataset": lambda **_: {"test": dataset},
        "test_split": "test",
        "doc_to_text": lambda doc: doc["_prompt"],
        "num_fewshot": 0,  # few-shot examples are already inside `_prompt`
        "metadata": {"version": 1},
    }
    if kind.choice:
        option_lists = [kind.options(row) for row in rows]

        def score_choice(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, Any]:
            options = option_lists[doc["_i"]]
            lls = [ll for ll, _ in results]
            gold = doc["_gold"]
            best = max(range(len(lls)), key=lambda j: lls[j])
            best_norm = max(range(len(lls)), key=lambda j: lls[j] / max(len(options[j]), 1))
            return {
                "acc": float(best == gold),
                "acc_norm": float(best_norm == gold),
                "nll": (lls[gold], doc["_ntok"]),
            }

        config = base | {
            "output_type": "multiple_choice",
            "doc_to_choice": lambda doc: option_lists[doc["_i"]],
            "doc_to_target": lambda doc: doc["_gold"],
            "target_delimiter": " ",
            "process_results": score_choice,
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                {"metric": "nll", "aggregation": token_mean_nll, "higher_is_better": False},
            ],
        }
    elif mode == "nll":
        config = base | {
            "output_type": "loglikelihood",
            "doc_to_target": lambda doc: doc["_reference"],
            "target_delimiter": "",
            "process_results": lambda doc, results: {"nll": (results[0][0], doc["_ntok"])},
            "metric_list": [{"metric": "nll", "aggregation": token_mean_nll, "higher_is_better": False}],
        }
    else:
        metric = kind.metric

        def score_text(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
            return kind.score(rows[doc["_i"]], results[0], run_code)

        config = base | {
            "output_type": "generate_until",
            "doc_to_target": lambda doc: doc["_reference"],
            "generation_kwargs": {
                "until": list(kind.stops),
                "max_gen_toks": min(spec.max_gen_toks, max_gen_toks or spec.max_gen_toks),
                "do_sample": False,
            },
            "process_results": score_text,
            "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True}],
            "unsafe_code": kind.runs_code,
        }
    return ConfigurableTask(config=config)


def run_task(lm: Any, task: Any, seed: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Evaluate one task; returns its aggregated metrics and one compact record per item."""
    import numpy as np
    import torch
    from lm_eval.evaluator import evaluate as lm_evaluate

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    task.set_fewshot_seed(seed=seed)
    name = task.config.task
    out = lm_evaluate(
        lm=lm,
        task_dict={"tasks": {name: task}, "groups": {}, "group_map": {}},
        bootstrap_iters=0,
        log_samples=True,
        confirm_run_unsafe_code=True,
    )
    if out is None:
        raise RuntimeError("lm-eval returned no results (not rank 0)")
    raw = out["results"][name]
    found = {key.split(",")[0]: value for key, value in raw.items() if "," in key and "stderr" not in key}
    samples = []
    for sample in out.get("samples", {}).get(name, []):
        record: dict[str, Any] = {"id": sample["doc"]["id"]}
        response = sample["filtered_resps"][0]
        if isinstance(response, str):
            record["response"] = response
        for key in found:
            value = sample.get(key)
            record[key] = list(value) if isinstance(value, tuple) else value
        samples.append(record)
    metrics: dict[str, float] = {}
    for key, value in found.items():
        metrics[key] = float(value)
        per_item = [s[key] for s in samples if isinstance(s.get(key), float | int)]
        if len(per_item) > 1:
            metrics[f"{key}_stderr"] = float(np.std(per_item, ddof=1) / math.sqrt(len(per_item)))
    if "nll" in metrics:
        metrics["ppl"] = math.exp(min(metrics["nll"], 700.0))
        metrics["nll_tokens"] = float(sum(s["nll"][1] for s in samples if isinstance(s.get("nll"), list)))
    return metrics, samples
