"""`--executor ray`: the fit in one Ray task and scoring as a Ray Data pipeline of actors, on CPUs
or GPUs, on a local cluster or an existing one.

Scoring: the pending blocks are the dataset and one actor pool scores them. Each actor loads the
truncated prober and the fitted heads once (BlockScorer), then takes blocks one at a time: it
reads the block's rows from the shard itself (a JSONL block from its byte offset, a Parquet or
Arrow block from its record batches), scores them in length-bucketed batches and writes the
block's files, exactly as the local executor does. Only block names and row counts travel back to
the driver, so neither texts nor features pass through the object store. A block whose file
exists is skipped, so a restarted actor or a rerun after a kill does only what is left.

Devices: with `gpus_per_worker` G > 0 each actor asks Ray for G GPUs (0.5: two actors share one)
and runs its prober on the GPU Ray gives it; with G = 0 (the default) actors run on CPU, even on
nodes that have GPUs (Ray then hides none of them, so an actor must not take one it was not
given). With G > 0 the fit runs as one Ray task holding G GPUs too; with G = 0 it runs here.

RAY_ADDRESS (or an already initialised Ray) picks an existing cluster, whose nodes must see the
pool, fitted and output paths and have daar installed; otherwise a local cluster of
`workers x threads` CPUs and this machine's GPUs is started and stopped around the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from daar.config import SelectConfig
from daar.errors import UserError
from daar.scale.executors import Executor, ScoringJob, register
from daar.scale.fit import fit_pool
from daar.scale.folder import ScoreFolder
from daar.scale.score import BlockScorer
from daar.scale.shards import Block, Shard, read_blocks
from daar.utils.progress import console, progress_bar

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # blocks go to disk, the store only carries their names


def _ray():
    try:
        import ray
    except ImportError as err:
        raise UserError("--executor ray needs the ray package: pip install 'ray[data]'") from err
    return ray


class _RayScorer:
    """A Ray Data actor: one prober per actor (on the GPU Ray assigned, or CPU), many blocks."""

    def __init__(
        self, fitted: str, config: dict, shards: list[dict], out: str, threads: int, features: bool, device: str
    ) -> None:
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                raise UserError(f"this Ray actor was given a GPU but torch sees none (CUDA_VISIBLE_DEVICES={visible})")
        self.config = SelectConfig.model_validate(config).model_copy(update={"device": device})
        self.scorer = BlockScorer(Path(fitted), self.config, threads)
        self.shards = [Shard.from_json(s) for s in shards]
        self.folder = ScoreFolder(Path(out))
        self.features = features

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        names, rows_done = [], []
        for values in zip(*(batch[k] for k in BLOCK_KEYS), strict=True):
            block = block_from_item(dict(zip(BLOCK_KEYS, values, strict=True)))
            if not self.folder.block_file(block).exists():  # a retried task after an actor restart
                for rows in read_blocks(self.shards[block.shard], block.shard, [block], self.config.fields):
                    frame, arrays = self.scorer.score(rows)
                    self.folder.write_block(block, frame, arrays if self.features else None)
            names.append(block.name)
            rows_done.append(block.stop - block.start)
        return {"block": names, "rows": rows_done}


# A block as a Ray Data row: ints only (-1 for "no byte offset"), so every row has one schema.
BLOCK_KEYS = ("shard", "start", "stop", "seek", "line")


def block_item(block: Block) -> dict[str, int]:
    seek = -1 if block.seek is None else block.seek
    line = -1 if block.line is None else block.line
    return {"shard": block.shard, "start": block.start, "stop": block.stop, "seek": seek, "line": line}


def block_from_item(item: dict[str, Any]) -> Block:
    seek, line = int(item["seek"]), int(item["line"])
    return Block(
        int(item["shard"]),
        int(item["start"]),
        int(item["stop"]),
        seek=None if seek < 0 else seek,
        line=None if line < 0 else line,
    )


def _fit_task(config: dict, pool: str | list[str], out: str, cache_dir: str | None) -> dict[str, Any]:
    """`daar fit` inside a Ray task, on the GPU Ray gave it (the settings' device `auto` finds it)."""
    settings = SelectConfig.model_validate(config)
    shards = [Path(p) for p in pool] if isinstance(pool, list) else pool
    return fit_pool(settings, shards, Path(out), Path(cache_dir) if cache_dir else None)


def fit_actors(wanted: int, cluster_gpus: float, per_worker: float) -> tuple[int, str | None]:
    """Actors that can run at once when each asks for `per_worker` GPUs, and a note when that is
    not what was asked (or when GPUs go unused); a cluster without room for one is an error."""
    if not per_worker:
        if cluster_gpus:
            return wanted, (
                f"the Ray cluster has {cluster_gpus:g} GPUs; actors run on CPU unless "
                "--gpus-per-worker is given (e.g. 1, or 0.5 for two actors per GPU)"
            )
        return wanted, None
    if cluster_gpus < per_worker:
        raise UserError(
            f"--gpus-per-worker {per_worker:g}: the Ray cluster has {cluster_gpus:g} GPUs "
            "(start its nodes with their GPUs, or score on CPU with --gpus-per-worker 0)"
        )
    room = int(cluster_gpus / per_worker + 1e-9)
    if room < wanted:
        return room, f"{cluster_gpus:g} GPUs hold {room} actors of {per_worker:g} GPU: {room} score, not {wanted}"
    return wanted, None


@register
class RayExecutor(Executor):
    name = "ray"

    started = False  # this executor started Ray, and stops it when its session ends
    depth = 0

    @contextmanager
    def session(self) -> Iterator[None]:
        """Ray is started when first needed (a GPU fit, the scoring) and stopped when the
        outermost session ends, so a fit and a scoring share one cluster and a CPU fit none."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.started:
                _ray().shutdown()
                self.started = False

    def connect(self):
        """Ray, connected: the cluster RAY_ADDRESS names, an initialised one, or a local one."""
        ray = _ray()
        if ray.is_initialized():
            return ray
        if not self.depth:
            raise RuntimeError("RayExecutor used outside its session; please report this bug")
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(
                num_cpus=self.workers * (self.threads or 1),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
            )
        self.started = True
        return ray

    def actors(self, pending: int) -> int:
        """How many actors to start: --workers, no more than blocks, nor than the cluster's GPUs hold."""
        gpus = float(self.connect().cluster_resources().get("GPU", 0))
        count, note = fit_actors(min(self.workers, pending), gpus, self.gpus_per_worker)
        if note:
            console.print(f"[yellow]note:[/] {note}")
        return count

    def fit(
        self, config: SelectConfig, pool: str | Path | list[Path], out: Path, cache_dir: Path | None
    ) -> dict[str, Any]:
        if not self.gpus_per_worker:
            return super().fit(config, pool, out, cache_dir)
        ray = self.connect()
        self.actors(1)  # a clear error when the cluster has no GPU for the task
        task = ray.remote(num_gpus=self.gpus_per_worker, num_cpus=self.threads or 1, max_retries=0)(_fit_task)
        with console.status(f"fitting on a Ray GPU task ({self.gpus_per_worker:g} GPU)"):
            return ray.get(
                task.remote(
                    config.model_dump(mode="json"),
                    # absolute, a glob too: the task runs in another folder
                    [str(Path(p).resolve()) for p in pool] if isinstance(pool, list) else str(Path(pool).absolute()),
                    str(Path(out).resolve()),
                    str(Path(cache_dir).resolve()) if cache_dir else None,
                )
            )

    def score(self, job: ScoringJob) -> None:
        ray = self.connect()
        threads = self.threads or 1
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one bar, ours, counting rows
        items = [block_item(b) for b in job.pending]
        actors = self.actors(len(items))
        resources: dict[str, Any] = {"num_cpus": threads}
        if self.gpus_per_worker:
            resources["num_gpus"] = self.gpus_per_worker
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _RayScorer,
            fn_constructor_kwargs={
                "fitted": str(Path(job.fitted).resolve()),
                "config": job.config.model_dump(mode="json"),
                "shards": [s.to_json() for s in job.shards],
                "out": str(job.folder.root.resolve()),
                "threads": threads,
                "features": job.features,
                "device": "cuda" if self.gpus_per_worker else "cpu",
            },
            batch_size=1,
            concurrency=actors,
            **resources,
        )
        where = f"{actors} workers" + (f", {self.gpus_per_worker:g} GPU each" if self.gpus_per_worker else "")
        with progress_bar() as bar:
            task = bar.add_task(
                f"scoring on Ray ({where})", total=sum(b.stop - b.start for b in job.pending), info="rows"
            )
            for row in dataset.iter_rows():
                bar.update(task, advance=int(row["rows"]), info="rows")
