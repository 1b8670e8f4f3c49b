"""`daar tune`: LoRA fine-tuning of the learner on a selection, from the command line.

Options default to None so that only what the user typed overrides TuneConfig; the paper's
defaults therefore live in one place (daar.tune.settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from daar.config import DEFAULT_MODEL
from daar.errors import UserError, friendly


def register(app: typer.Typer) -> None:
    """Add the `tune` command to the daar CLI."""
    app.command("tune")(friendly(tune_command))


def tune_command(
    selection: Annotated[Path, typer.Argument(help="Rows to train on (a `daar select` output or any pool file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the adapter, logs and manifest.")],
    model: Annotated[str, typer.Option(help="Base model: built-in alias, local folder or cached hub id.")] = (
        DEFAULT_MODEL
    ),
    rank: Annotated[int | None, typer.Option(help="LoRA rank r (paper: 8).")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha (paper: 16).")] = None,
    dropout: Annotated[float | None, typer.Option(help="LoRA dropout (paper: 0.05).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (paper: 5e-5).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option(help="Fraction of steps for linear warm-up (0.05).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the selection (paper: 1).")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per example; longer ones are cut (2048).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per device per forward pass (4).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Forward passes per optimiser step (4).")] = None,
    sampling: Annotated[
        str | None,
        typer.Option(help="Rows per pass when a step takes several: balanced (by length, less padding) or random."),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimiser steps.")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Use only the first N rows of the selection.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for adapter init, shuffling and dropout (42).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (auto: cuda when present).")] = None,
    template: Annotated[str | None, typer.Option(help="Prompt template: auto, chat or plain.")] = None,
    logging_steps: Annotated[int | None, typer.Option(help="Log the loss every N steps (10).")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Write a checkpoint every N steps (50).")] = None,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations to save GPU memory.")
    ] = False,
    merge: Annotated[
        bool, typer.Option("--merge", help="Also save the base model with the adapter merged in.")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in OUT.")] = False,
) -> None:
    """LoRA-tune MODEL on SELECTION (docs/METHOD.md, step 9); a finished run with the same settings is reused."""
    from pydantic import ValidationError

    from daar.tune.settings import TuneConfig

    overrides: dict[str, Any] = {
        "rank": rank,
        "alpha": alpha,
        "dropout": dropout,
        "lr": lr,
        "warmup_ratio": warmup_ratio,
        "epochs": epochs,
        "max_length": max_length,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "sampling": sampling,
        "max_steps": max_steps,
        "max_rows": max_rows,
        "seed": seed,
        "device": device,
        "template": template,
        "logging_steps": logging_steps,
        "save_steps": save_steps,
    }
    values = {k: v for k, v in overrides.items() if v is not None}
    values.update(gradient_checkpointing=gradient_checkpointing, merge=merge, resume=resume)
    try:
        settings = TuneConfig.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in err.errors())
        raise UserError(f"invalid option: {problems}") from None

    from daar.tune.lora import tune

    _print_summary(tune(selection, model, out, settings))


def _print_summary(result: Any) -> None:
    from rich.table import Table

    from daar.utils.progress import console

    m = result.manifest
    table = Table(title="daar tune" + (" (cached: nothing retrained)" if result.cached else ""), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    sel = m["selection"]
    table.add_row(
        "rows used",
        f"{m['rows_used']} (rejected on reading: {sel['rejected']}, too long: "
        f"{m['rows_too_long']}, truncated: {m['rows_truncated']})",
    )
    table.add_row("steps", f"{m['steps']} (this run: {m['steps_this_run']}, resumed from {m['resumed_from_step']})")
    loss = m.get("final_loss")
    table.add_row("final loss", "n/a" if loss is None else f"{loss:.4f}")
    table.add_row(
        "time",
        f"{m['seconds']:.1f} s, {m.get('seconds_per_step') or 0:.2f} s/step, "
        f"{m.get('tokens_per_second') or 0:.0f} tokens/s on {m['device']} ({m['dtype']})",
    )
    table.add_row("adapter", str(result.adapter_dir))
    if result.merged_dir is not None:
        table.add_row("merged model", str(result.merged_dir))
    console.print(table)
    typer.echo(str(result.adapter_dir))
