"""`daar eval`: benchmark a base or LoRA-tuned model from the command line.

Heavy imports (torch, lm-eval) happen inside the command, so `daar --help` stays fast.
Expected failures (unknown task, missing file, bad model) print one red line and exit with 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from daar.config import DEFAULT_MODEL
from daar.errors import friendly
from daar.evaluate.registry import TASKS, EvalError
from daar.utils.progress import console


def _summary(report: dict) -> Table:
    """One row per task: items, the headline scores, NLL and seconds."""
    table = Table(title=f"{report['model']} ({report['mode']})" + (" + adapter" if report["adapter"] else ""))
    for column in ("task", "n", "score", "nll/token", "seconds"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for name, result in report["tasks"].items():
        metrics = result["metrics"]
        scores = [
            f"{key} {metrics[key]:.3f}" for key in ("exact_match", "pass_at_1", "acc", "acc_norm") if key in metrics
        ]
        nll = f"{metrics['nll']:.3f}" if "nll" in metrics else "-"
        table.add_row(name, str(result["n"]), ", ".join(scores) or "-", nll, f"{result['seconds']:.1f}")
    return table


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @friendly
    def eval_command(
        model: Annotated[str, typer.Argument(help="Built-in alias, local model folder or hub id.")] = (
            DEFAULT_MODEL
        ),
        adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder to merge in.")] = None,
        tasks: Annotated[str, typer.Option(help=f"Comma-separated tasks or 'all': {','.join(TASKS)}.")] = "all",
        mode: Annotated[str, typer.Option(help="generate (exact match, pass@1) or nll (NLL per token).")] = (
            "generate"
        ),
        limit: Annotated[int | None, typer.Option(min=1, help="Score at most N items per task.")] = None,
        data_dir: Annotated[
            Path | None,
            typer.Option(help="Benchmark folder (default: $DAAR_BENCH_DIR or shared/data/bench above)."),
        ] = None,
        out: Annotated[Path | None, typer.Option(help="Write eval.json here (a file or a folder).")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        batch_size: Annotated[int, typer.Option(min=1, help="Requests per forward pass.")] = 8,
        seed: Annotated[int, typer.Option(help="Seed of the subsamples and of generation.")] = 42,
        num_fewshot: Annotated[
            int | None,
            typer.Option(min=0, help="Few-shot examples (default: MBPP 3 in generate mode, else 0)."),
        ] = None,
        max_gen_toks: Annotated[int | None, typer.Option(min=1, help="Cap on generated tokens per answer.")] = None,
    ) -> None:
        """Score a model on NQ, TriviaQA, HellaSwag, GSM8K, MATH, MBPP, HumanEval and MMLU."""
        from daar.evaluate.runner import evaluate

        if mode not in ("generate", "nll"):
            raise EvalError(f"--mode must be 'generate' or 'nll', got {mode!r}")
        report = evaluate(
            model=model,
            adapter=adapter,
            tasks=tasks,
            mode=mode,  # type: ignore[arg-type]
            limit=limit,
            data_dir=data_dir,
            device=device,
            batch_size=batch_size,
            seed=seed,
            out=out,
            num_fewshot=num_fewshot,
            max_gen_toks=max_gen_toks,
        )
        console.print(_summary(report))
        if "out" in report:
            console.print(f"wrote {report['out']}")
