"""Where `daar fit` and `daar score` run, looked up by name (`--executor local|ray`).

An executor module registers its class here when it is imported, and `make_executor` imports the
module of a built-in name only when that name is asked for: scoring code never imports Ray (or
any other backend), and a machine without Ray runs the local executor as before.

Every executor scores the same blocks with the same code (daar.scale.score.BlockScorer) and
writes the same files, so the choice changes where and how fast, never what is selected.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from daar.config import SelectConfig
from daar.errors import UserError
from daar.scale.fit import fit_pool
from daar.scale.folder import ScoreFolder
from daar.scale.shards import Block, Shard

# name -> module that registers it; imported on first use only
BUILTIN = {"local": "daar.scale.score", "ray": "daar.scale.ray_executor"}
_REGISTRY: dict[str, type[Executor]] = {}


@dataclass(frozen=True)
class ScoringJob:
    """What an executor needs to score the pending blocks of one scores folder."""

    shards: list[Shard]
    pending: list[Block]
    fitted: Path
    config: SelectConfig
    folder: ScoreFolder
    features: bool


class Executor(ABC):
    """Runs the fit and the scoring of blocks. `workers`, `threads` (torch threads per worker) and
    `gpus_per_worker` (a fraction lets actors share a GPU) describe the resources it may use."""

    name: ClassVar[str]

    def __init__(self, workers: int = 1, threads: int | None = None, gpus_per_worker: float = 0.0) -> None:
        if workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        if threads is not None and threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        check_gpus(gpus_per_worker)
        self.workers, self.threads, self.gpus_per_worker = workers, threads, float(gpus_per_worker)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Resources held across a fit and a scoring pass (a Ray cluster); none by default."""
        yield

    def fit(
        self, config: SelectConfig, pool: str | Path | list[Path], out: Path, cache_dir: Path | None
    ) -> dict[str, Any]:
        """The fitted state of `pool` in `out`; here, in this process."""
        return fit_pool(config, pool, out, cache_dir)

    @abstractmethod
    def score(self, job: ScoringJob) -> None:
        """Write every pending block's files into job.folder."""


def check_gpus(gpus: float) -> None:
    """Ray's rule: a fraction of one GPU, or a whole number of them."""
    if not math.isfinite(gpus) or gpus < 0:
        raise UserError(f"--gpus-per-worker must be 0 or more, got {gpus}")
    if gpus > 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-worker above 1 must be a whole number (Ray's rule), got {gpus}")


def register(cls: type[Executor]) -> type[Executor]:
    _REGISTRY[cls.name] = cls
    return cls


def make_executor(name: str, **resources: Any) -> Executor:
    """The executor called `name`, importing its module first if it is a built-in one."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        known = sorted(set(BUILTIN) | set(_REGISTRY))
        raise UserError(f"unknown executor {name!r}; expected one of {', '.join(known)}")
    return _REGISTRY[name](**resources)


def as_executor(executor: str | Executor, **resources: Any) -> Executor:
    return executor if isinstance(executor, Executor) else make_executor(executor, **resources)
