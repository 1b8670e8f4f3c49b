"""`daar report RUN_DIR [RUN_DIR ...]`: render one or several run folders into a self-contained page.

A folder that is not a run (or a damaged file in one) ends with one red line and exit code 2, never
a traceback: the user mistyped a path, they did not hit a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from daar.errors import friendly
from daar.report.load import ReportError
from daar.report.render import write_report

err_console = Console(stderr=True)


def report_command(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folders written by `daar select`; the first is the reference.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file to write (default: FIRST_RUN/report.html).")
    ] = None,
) -> None:
    """Write report.html (settings, counts, examples, probe, histograms, map, mix; side by side for several runs)."""
    try:
        path = write_report(run_dirs, out)
    except OSError as err:
        raise ReportError(f"cannot write the report: {err.strerror or err} ({err.filename or out})") from None
    err_console.print(f"wrote {path} (figures in {path.parent / 'figures'})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(friendly(report_command))
