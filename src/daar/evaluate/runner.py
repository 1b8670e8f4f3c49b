"""`evaluate()`: score a base or LoRA-tuned model on the benchmarks and record how it was done.

The model is loaded once (through `daar.models`, so built-in aliases and local folders work the
same as everywhere else), an adapter is merged into it, and each task runs on lm-eval separately
so that its wall time can be reported. The result is one JSON-able dict; with `out` it is also
written as `eval.json`, next to `<stem>.samples.jsonl` with every item's answer and score.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from daar.evaluate import harness
from daar.evaluate.metrics import CodeCheck
from daar.evaluate.registry import EvalError, load_fewshot_rows, load_task_rows, parse_tasks, resolve_data_dir
from daar.evaluate.sandbox import run_python
from daar.utils.cache import write_json, write_jsonl
from daar.utils.machine import package_versions

CODE_TIMEOUT_S = 10.0
CODE_MEMORY_MB = 1024


def evaluate(
    model: str,
    adapter: Path | None = None,
    tasks: list[str] | str = "all",
    mode: Literal["generate", "nll"] = "generate",
    limit: int | None = None,
    data_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    seed: int = 42,
    out: Path | None = None,
    num_fewshot: int | None = None,
    code_timeout: float = CODE_TIMEOUT_S,
    max_gen_toks: int | None = None,
) -> dict[str, Any]:
    """Score `model` (plus an optional LoRA `adapter`) on `tasks` and return per-task metrics.

    `mode="generate"` scores free answers (exact match, pass@1) and choice tasks by log-likelihood;
    `mode="nll"` scores every reference answer by its NLL per token (lower is better), which still
    separates models too small to answer correctly. `limit` cuts each task's seeded subsample.
    `num_fewshot` overrides the task defaults (MBPP 3, others 0); `nll` mode defaults to 0 shots.
    `max_gen_toks` caps every generation (task defaults 32-384 tokens), for quick CPU runs.
    Raises `EvalError` for unknown tasks, missing files or bad settings before loading the model.
    """
    if mode not in ("generate", "nll"):
        raise EvalError(f"mode must be 'generate' or 'nll', got {mode!r}")
    if batch_size < 1:
        raise EvalError(f"batch_size must be at least 1, got {batch_size}")
    if max_gen_toks is not None and max_gen_toks < 1:
        raise EvalError(f"max_gen_toks must be at least 1, got {max_gen_toks}")
    if num_fewshot is not None and num_fewshot < 0:
        raise EvalError(f"num_fewshot must be >= 0, got {num_fewshot}")
    specs = parse_tasks(tasks)
    if mode == "generate" and any(spec.scored_as(mode).runs_code for spec in specs):
        check_sandbox()  # an hour of generation is no help if no answer can be run
    bench = resolve_data_dir(data_dir)
    # Read every file first: a missing file should fail in a second, not after an hour of scoring.
    loaded = {spec.name: (load_task_rows(spec, bench, limit, seed), load_fewshot_rows(spec, bench)) for spec in specs}

    harness.go_offline()
    from lm_eval.models.huggingface import HFLM

    start = time.perf_counter()
    from daar.models import pick_device, resolve_model
    from daar.models.adapter import load_tuned

    device = pick_device(device)
    folder = resolve_model(model)
    lm_model, tokenizer = load_tuned(model, adapter, device=device)
    wrapper = HFLM(pretrained=lm_model, tokenizer=tokenizer, batch_size=batch_size, max_batch_size=batch_size)
    load_seconds = time.perf_counter() - start

    results: dict[str, Any] = {}
    all_samples: dict[str, list[dict[str, Any]]] = {}

    def run_code(check: CodeCheck) -> bool:
        result = run_python(
            check.code, timeout=code_timeout, memory_mb=CODE_MEMORY_MB, tests=check.tests, shared=check.shared
        )
        return result.passed

    for spec in specs:
        rows, pool = loaded[spec.name]
        shots = num_fewshot if num_fewshot is not None else (spec.default_fewshot if mode == "generate" else 0)
        if shots and not pool:
            raise EvalError(f"task {spec.name!r} has no few-shot examples; use num_fewshot 0")
        t0 = time.perf_counter()
        docs = harness.build_docs(spec, rows, pool, shots, tokenizer, mode)
        task = harness.build_task(spec, rows, docs, mode, run_code, max_gen_toks)
        metrics, samples = harness.run_task(wrapper, task, seed)
        results[spec.name] = {
            "metrics": metrics,
            "n": len(rows),
            "num_fewshot": shots,
            "seconds": round(time.perf_counter() - t0, 2),
            "file": spec.file,
        }
        all_samples[spec.name] = samples

    report: dict[str, Any] = {
        "model": model,
        "model_path": str(folder),
        "adapter": str(adapter) if adapter is not None else None,
        "mode": mode,
        "tasks": results,
        "settings": {
            "limit": limit,
            "seed": seed,
            "batch_size": batch_size,
            "device": device,
            "data_dir": str(bench),
            "code_timeout_s": code_timeout,
            "max_gen_toks": max_gen_toks,
        },
        "load_seconds": round(load_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
        "versions": package_versions(),
    }
    if out is not None:
        write_report(report, all_samples, Path(out))
    return report


def check_sandbox() -> None:
    """Code tasks need the namespace sandbox (or an explicit DAAR_SANDBOX=process); say so up front."""
    from daar.evaluate.sandbox import barrier_available, sandbox_mode

    try:
        if sandbox_mode() == "process":
            return
    except ValueError as err:
        raise EvalError(str(err)) from None
    ok, why = barrier_available()
    if not ok:
        raise EvalError(
            f"MBPP and HumanEval run model-written code, and the sandbox cannot be built here: {why}. "
            "Leave them out (--tasks), or accept the weaker process-only guard with DAAR_SANDBOX=process "
            "(docs/SANDBOX.md)."
        )


def report_path(out: Path) -> Path:
    """`out` itself when it names a file; `out/eval.json` when it is a folder or has no suffix."""
    return out / "eval.json" if out.is_dir() or out.suffix == "" else out


def write_report(report: dict[str, Any], samples: dict[str, list[dict[str, Any]]], out: Path) -> Path:
    """Write eval.json (see `report_path`) and `<stem>.samples.jsonl` with every item beside it."""
    out = report_path(out)
    report["out"] = str(out)
    rows = ({"task": name, **record} for name, records in samples.items() for record in records)
    write_jsonl(out.with_name(out.stem + ".samples.jsonl"), rows)
    write_json(out, report)  # last, and whole: a report never points at half-written samples
    return out
