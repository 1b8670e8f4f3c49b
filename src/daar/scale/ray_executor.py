"""Scoring as a Ray Data pipeline: the pending blocks are the dataset, one actor pool scores them.

Each actor loads the truncated prober and the fitted heads once (BlockScorer), then takes blocks
one at a time: it reads the block's rows from the shard itself (only the block's rows are parsed,
the ones before it are skipped), scores them in length-bucketed batches and writes the block's
files, exactly as the local executor does. Only block names and row counts travel back to the
driver, so neither texts nor features pass through the object store. A block whose file exists
is skipped, so a restarted actor or a rerun after a kill does only what is left.

RAY_ADDRESS (or an already initialised Ray) picks an existing cluster, whose nodes must see the
pool, fitted and output paths and have daar installed; otherwise a local cluster of
`workers x threads` CPUs is started and stopped around the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from daar.config import SelectConfig
from daar.errors import UserError
from daar.scale.score import BlockScorer, ScoreFolder
from daar.scale.shards import Block, Shard, read_blocks
from daar.utils.progress import progress_bar

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # blocks go to disk, the store only carries their names


class _RayScorer:
    """A Ray Data actor: one prober per actor, many blocks."""

    def __init__(self, fitted: str, config: dict, shards: list[dict], out: str, threads: int, features: bool) -> None:
        self.config = SelectConfig.model_validate(config)
        self.scorer = BlockScorer(Path(fitted), self.config, threads)
        self.shards = [Shard.from_json(s) for s in shards]
        self.folder = ScoreFolder(Path(out))
        self.features = features

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        names, rows_done = [], []
        for shard, start, stop in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            block = Block(int(shard), int(start), int(stop))
            if not self.folder.block_file(block).exists():  # a retried task after an actor restart
                for rows in read_blocks(self.shards[block.shard], block.shard, [block], self.config.fields):
                    frame, arrays = self.scorer.score(rows)
                    self.folder.write_block(block, frame, arrays if self.features else None)
            names.append(block.name)
            rows_done.append(block.stop - block.start)
        return {"block": names, "rows": rows_done}


def score_with_ray(
    shards: list[Shard],
    pending: list[Block],
    fitted: Path,
    config: SelectConfig,
    folder: ScoreFolder,
    *,
    workers: int,
    threads: int | None,
    features: bool,
) -> None:
    try:
        import ray
    except ImportError as err:  # pragma: no cover - ray is a dependency
        raise UserError("--executor ray needs the ray package: pip install 'ray[data]'") from err
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if not pending:
        return
    threads = threads or 1
    started_here = not ray.is_initialized()
    if started_here:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers * threads,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
            )
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one bar, ours, counting rows
        items = [{"shard": b.shard, "start": b.start, "stop": b.stop} for b in pending]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _RayScorer,
            fn_constructor_kwargs={
                "fitted": str(Path(fitted).resolve()),
                "config": config.model_dump(mode="json"),
                "shards": [s.to_json() for s in shards],
                "out": str(folder.root.resolve()),
                "threads": threads,
                "features": features,
            },
            batch_size=1,
            concurrency=min(workers, len(pending)),
            num_cpus=threads,
        )
        with progress_bar() as bar:
            task = bar.add_task(
                f"scoring on Ray ({workers} workers)", total=sum(b.stop - b.start for b in pending), info="rows"
            )
            for row in dataset.iter_rows():
                bar.update(task, advance=int(row["rows"]), info="rows")
    finally:
        if started_here:
            ray.shutdown()
