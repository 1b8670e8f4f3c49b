"""User errors versus bugs, and the one place the command line tells them apart.

A `UserError` is something the person running `daar` can fix (a bad file, an unknown name, a
folder another process is using): the CLI prints its message in one red line and exits with 2.
Anything else is a bug in daar or a library, and keeps its traceback so that it can be reported;
`daar --debug ...` (or DAAR_DEBUG=1) shows the traceback of user errors too.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UserError(ValueError):
    """A problem with the user's input or settings; the message says what to do."""


def debug_enabled() -> bool:
    return os.environ.get("DAAR_DEBUG", "") not in ("", "0")


def friendly(func: F) -> F:
    """Run a CLI command, turning user errors (and invalid settings) into one line and exit code 2."""
    from pydantic import ValidationError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (UserError, ValidationError) as err:
            if debug_enabled():
                raise
            fail(validation_message(err) if isinstance(err, ValidationError) else str(err))

    return wrapper  # type: ignore[return-value]


def fail(message: str) -> None:
    """One red line on stderr and exit code 2 (errors.py imports nothing of daar: everything may use it)."""
    import typer
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def validation_message(err: Any) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        message = "unknown setting" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{where}: {message}")
    return "invalid settings: " + "; ".join(parts)
