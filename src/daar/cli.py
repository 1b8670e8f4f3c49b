"""The `daar` command line: the app, and the parts of the package that register commands on it."""

from __future__ import annotations

import os

import typer

from daar import __version__, cache_command, select_command
from daar.analyze import commands as analyze_commands
from daar.coevolve import commands as coevolve_commands
from daar.evaluate import commands as evaluate_commands
from daar.experiment import commands as experiment_commands
from daar.report import commands as report_commands
from daar.scale import commands as scale_commands
from daar.tune import commands as tune_commands

app = typer.Typer(
    help="Diversity as a Reward: select fine-tuning data that improves an LLM across all domains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"daar {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of user errors too (or DAAR_DEBUG=1)."),
    offline: bool = typer.Option(
        False, "--offline", help="Use only models and datasets already on disk or in the HF cache (HF_HUB_OFFLINE=1)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print daar's version and exit."
    ),
) -> None:
    if debug:
        os.environ["DAAR_DEBUG"] = "1"
    if offline:  # read by daar.models and daar.read.hub at each call, by huggingface_hub and datasets at import
        os.environ["HF_HUB_OFFLINE"] = "1"


# Each part of the package registers its own commands (select, tune, eval, ...); their modules
# import nothing heavy at the top, so `daar --help` stays fast.
for _module in (
    select_command,
    scale_commands,
    tune_commands,
    evaluate_commands,
    experiment_commands,
    coevolve_commands,
    analyze_commands,
    report_commands,
    cache_command,
):
    _module.register(app)


def main() -> None:
    app()
