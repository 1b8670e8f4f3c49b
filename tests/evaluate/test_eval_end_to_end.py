"""`evaluate()` in both modes and `daar eval` on the tiny random model, a few items per task."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from daar.evaluate import evaluate
from daar.evaluate.registry import TASKS

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "bench"))


@pytest.fixture(scope="module")
def bench_dir() -> Path:
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    return BENCH


def test_nll_mode_all_tasks(tiny_model: Path, bench_dir: Path, tmp_path: Path) -> None:
    report = evaluate(
        str(tiny_model),
        tasks=list(TASKS),
        mode="nll",
        limit=2,
        data_dir=bench_dir,
        device="cpu",
        batch_size=4,
        out=tmp_path,
    )
    assert list(report["tasks"]) == list(TASKS)
    for name, result in report["tasks"].items():
        assert result["n"] == 2
        nll = result["metrics"]["nll"]
        # a random model over a 49k vocabulary: about log(49152) = 10.8 nats per token
        assert 5 < nll < 20 and math.isfinite(result["metrics"]["ppl"]), name
        if TASKS[name].choice:
            assert 0 <= result["metrics"]["acc"] <= 1
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["mode"] == "nll" and written["versions"]["lm-eval"] == "0.4.13"
    assert written["settings"]["limit"] == 2
    samples = [json.loads(line) for line in (tmp_path / "eval.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * len(TASKS)


def test_nll_matches_a_direct_forward_pass(tiny_model: Path, bench_dir: Path, tmp_path: Path) -> None:
    """lm-eval's log-likelihood and our token count give the same NLL as scoring by hand."""
    from daar.evaluate.registry import get_task, load_task_rows
    from daar.models import load_causal_lm, load_tokenizer

    report = evaluate(str(tiny_model), tasks=["nq"], mode="nll", limit=1, data_dir=bench_dir, device="cpu")
    spec = get_task("nq")
    row = load_task_rows(spec, bench_dir, limit=1)[0]
    kind = spec.scored_as("nll")
    context, answer = kind.prompt(row, []), kind.reference(row)
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    head = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    scored = [logits[i - 1, whole[i]].item() for i in range(len(head), len(whole))]
    assert report["tasks"]["nq"]["metrics"]["nll"] == pytest.approx(-sum(scored) / len(scored), rel=1e-4)


def test_generate_mode_all_tasks(tiny_model: Path, bench_dir: Path) -> None:
    report = evaluate(
        str(tiny_model),
        tasks="all",
        mode="generate",
        limit=2,
        data_dir=bench_dir,
        device="cpu",
        batch_size=2,
        max_gen_toks=8,
        code_timeout=5,
    )
    for name, result in report["tasks"].items():
        metrics = result["metrics"]
        key = {"mbpp": "pass_at_1", "humaneval": "pass_at_1", "hellaswag": "acc_norm", "mmlu": "acc"}.get(
            name, "exact_match"
        )
        assert 0.0 <= metrics[key] <= 1.0, name
    assert report["tasks"]["mbpp"]["num_fewshot"] == 3


def test_cli_runs_and_writes(tiny_model: Path, bench_dir: Path, tmp_path: Path) -> None:
    from daar.cli import app

    out = tmp_path / "res" / "eval.json"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(tiny_model),
            "--tasks",
            "nq,mmlu",
            "--mode",
            "nll",
            "--limit",
            "2",
            "--data-dir",
            str(bench_dir),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["tasks"]) == {"nq", "mmlu"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "nq,gsm8"], "Did you mean 'gsm8k'"),
        (["--tasks", "nq", "--data-dir", "/nonexistent/bench"], "does not exist"),
        (["--tasks", "nq", "--mode", "fast"], "--mode must be"),
    ],
)
def test_cli_errors_without_traceback(tiny_model: Path, args: list[str], message: str) -> None:
    from daar.cli import app

    result = CliRunner().invoke(app, ["eval", str(tiny_model), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_names_a_missing_file(tiny_model: Path, tmp_path: Path) -> None:
    from daar.cli import app

    result = CliRunner().invoke(app, ["eval", str(tiny_model), "--tasks", "gsm8k", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "gsm8k_test.jsonl.gz is missing" in " ".join(result.output.split())
