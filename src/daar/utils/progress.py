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


def progress_bar(transient: bool = False, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
        disable=disable,
    )


class StageTimer:
    """Wall time per named stage, recorded into the run manifest.

    Stages may nest (a selector's score step may compute features); each stage is charged only
    its own time, so the per-stage seconds add up to the run's wall time instead of double-counting.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cached: dict[str, bool] = {}
        self._children: list[float] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, bool]]:
        flag = {"cached": False}
        start = time.perf_counter()
        self._children.append(0.0)
        try:
            yield flag
        finally:
            elapsed = time.perf_counter() - start
            own = elapsed - self._children.pop()
            if self._children:
                self._children[-1] += elapsed
            self.seconds[name] = round(self.seconds.get(name, 0.0) + own, 3)
            self.cached[name] = flag["cached"] and self.cached.get(name, True)

    def summary(self) -> dict[str, dict[str, float | bool]]:
        return {name: {"seconds": secs, "cached": self.cached[name]} for name, secs in self.seconds.items()}
