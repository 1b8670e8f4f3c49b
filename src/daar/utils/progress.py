"""Progress bars and stage timing shared by every long step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
    )


class StageTimer:
    """Wall time per named stage, recorded into the run manifest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cached: dict[str, bool] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, bool]]:
        flag = {"cached": False}
        start = time.perf_counter()
        try:
            yield flag
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            self.cached[name] = flag["cached"]
