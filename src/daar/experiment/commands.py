"""`daar experiment CONFIG.yaml`: methods x ratios x seeds, each selected, tuned and scored, in one table.

Expected failures (bad config, missing pool, model or benchmark file) print one red line and exit
with 2; heavy imports happen inside the command so `daar --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from daar.errors import friendly


def register(app: typer.Typer) -> None:
    @app.command("experiment")
    @friendly
    def experiment_command(
        config: Annotated[Path, typer.Argument(help="Experiment YAML (see configs/experiment_cpu.yaml).")],
        out: Annotated[
            Path | None, typer.Option(help="Output folder (default: the file's `out`, else runs/<config name>).")
        ] = None,
        parallel: Annotated[
            int | None, typer.Option(min=1, help="Cells at once, each in its own process (default: 1 on CPU).")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Validate and list the cells (done / to run); compute nothing.")
        ] = False,
    ) -> None:
        """Compare selection methods: select from the pool, LoRA-tune, evaluate; results.csv/.md/.png."""
        from daar.experiment.config import load_experiment
        from daar.experiment.runner import default_out, run_experiment

        settings = load_experiment(config, out)
        if parallel is not None:
            settings = settings.model_copy(update={"parallel": parallel})
        target = settings.out or default_out(config)
        result = run_experiment(settings, target, dry_run=dry_run)
        if dry_run:
            _print_plan(result)
        else:
            typer.echo(str(result.out_dir / "results.md"))


def _print_plan(result) -> None:
    from rich.table import Table

    from daar.utils.progress import console

    table = Table(title=f"daar experiment (dry run): {result.out_dir}")
    table.add_column("cell")
    table.add_column("status")
    for name, cell in result.cells.items():
        table.add_row(name, "[green]done[/]" if cell is not None else "to run")
    console.print(table)
