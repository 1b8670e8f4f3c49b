"""The `daar` command line. Each part of the package registers its own commands here."""

from __future__ import annotations

import importlib
import importlib.util
import os

import typer

app = typer.Typer(
    help="Diversity as a Reward: select fine-tuning data that improves an LLM across all domains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Modules that define `register(app)`; each adds its commands (select, tune, eval, ...).
COMMAND_MODULES = [
    "daar.commands",
    "daar.scale.commands",
    "daar.tune.commands",
    "daar.evaluate.commands",
    "daar.experiment.commands",
    "daar.coevolve.commands",
    "daar.analyze.commands",
    "daar.report.commands",
]



@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of user errors too (or DAAR_DEBUG=1)."),
) -> None:
    if debug:
        os.environ["DAAR_DEBUG"] = "1"


for _name in COMMAND_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)


def main() -> None:
    app()
