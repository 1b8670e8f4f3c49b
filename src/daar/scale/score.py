"""`daar score`: every row's scores (and prober features) by a fitted selector, block by block, on disk.

A scores folder holds

- plan.json: the shards (path, rows, offset, sha256), the block size and the fitted state's
  checksum; a rerun with another plan starts the folder afresh, the same plan resumes it;
- blocks/<shard>-<start>.parquet: one row per input row of the block (position, id, line, score
  columns, and `reason` for rows rejected on reading), written atomically and last, so a block
  file that exists is finished;
- features/<block>.safetensors (unless --no-features): e(x), f(x) and positions of its rows;
- complete.json, written once every block is, so a killed run never looks finished.

Only one block's rows, texts and features are in memory at a time (per worker), so peak memory
is the prober plus one block, whatever the pool's size (two, while the next block is read and
the last one written). The local executor reads each shard once, in order, the next block read
and tokenised in a worker while the prober runs; other executors (`--executor ray`,
daar.scale.ray_executor) are looked up by name in daar.scale.executors.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from daar.config import SelectConfig
from daar.errors import UserError
from daar.scale.executors import Executor, ScoringJob, as_executor, register
from daar.scale.folder import ScoreFolder, fitted_digest, fitted_settings
from daar.scale.shards import Block, BlockRows, blocks_of, plan_shards, read_blocks, shard_paths
from daar.select.base import Context, load_selector
from daar.utils.cache import write_json
from daar.utils.lock import folder_lock
from daar.utils.progress import progress_bar

DEFAULT_CHUNK_ROWS = 4096


class BlockScorer:
    """One worker's prober and heads, loaded once and used for many blocks."""

    def __init__(self, fitted: Path, config: SelectConfig, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.ctx = Context(config, Path(fitted))  # the cache folder is never written by scoring
        self.selector = load_selector(fitted)
        self.extractor = self.ctx.extractor() if self.selector.needs_features else None

    def tokenize(self, rows: BlockRows) -> list[list[int]] | None:
        """The token ids `score` needs (for a method that reads the prober's features); a worker may
        compute them ahead of the prober."""
        return self.extractor.tokenize([r.text for r in rows.records]) if self.extractor else None

    def score(
        self, rows: BlockRows, ids: list[list[int]] | None = None
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
        """The block's frame (every input row of it) and the features of its usable rows, if any."""
        records = rows.records
        feats = None
        if self.extractor is not None:
            texts = [r.text for r in records]
            feats = self.extractor.extract(texts, description=f"block {rows.block.name}", ids=ids)
        scores = self.selector.score_block(records, feats, self.ctx) if records else {}
        frame = pd.DataFrame(
            {
                "position": np.array([r.position for r in records], dtype=np.int64),
                "id": [r.id for r in records],
                "explicit_id": np.array([r.explicit_id for r in records], dtype=bool),
                "line": pd.array([rows.lines[r.position] for r in records], dtype="Int64"),
                **{k: (v.astype(str) if v.dtype == object else v) for k, v in scores.items()},
            }
        )
        if rows.rejected:
            rejected = pd.DataFrame(
                {
                    "position": np.array([r.position for r in rows.rejected], dtype=np.int64),
                    "id": [r.id for r in rows.rejected],
                    "explicit_id": np.zeros(len(rows.rejected), dtype=bool),
                    "line": pd.array([rows.lines.get(r.position) for r in rows.rejected], dtype="Int64"),
                    "reason": [r.reason for r in rows.rejected],
                }
            )
            frame = pd.concat([frame, rejected], ignore_index=True) if len(frame) else rejected
        frame = frame.sort_values("position", kind="stable").reset_index(drop=True)
        if feats is None:
            return frame, None
        positions = np.array([r.position for r in records], dtype=np.int64)
        return frame, {"position": positions, "emb": feats.emb, "hid": feats.hid}


def score_pool(
    pool: str | Path | list[Path],
    fitted: Path,
    out: Path,
    *,
    executor: str | Executor = "local",
    workers: int = 1,
    threads: int | None = None,
    gpus_per_worker: float = 0.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    features: bool = True,
) -> dict[str, Any]:
    """Score every row of `pool` into `out` with the fitted state; resumes an interrupted run.
    `executor` is a name (daar.scale.executors) or an executor already holding its resources."""
    if chunk_rows < 1:
        raise UserError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    runner = as_executor(executor, workers=workers, threads=threads, gpus_per_worker=gpus_per_worker)
    config = fitted_settings(fitted)
    folder = ScoreFolder(Path(out))
    started = time.perf_counter()
    shard_paths(pool)  # the pool exists: checked before the scores folder is made
    with folder_lock(folder.root, "daar score"):
        shards = plan_shards(pool, chunk_rows)
        plan = {
            "shards": [s.to_json() for s in shards],
            "chunk_rows": chunk_rows,
            "fitted": fitted_digest(fitted),
            "fitted_path": str(Path(fitted).resolve()),
            "features": features,
        }
        _check_prober(fitted, config)
        folder.open(plan)
        pending = [b for b in blocks_of(shards, chunk_rows) if not folder.finished(b, features)]
        if pending:
            with runner.session():
                runner.score(ScoringJob(shards, pending, Path(fitted), config, folder, features))
        missing = [b.name for b in blocks_of(shards, chunk_rows) if not folder.block_file(b).exists()]
        if missing:
            raise RuntimeError(f"{folder.root}: blocks {missing[:3]} were not written; please report this bug")
        summary = {
            "rows_in": sum(s.rows for s in shards),
            "blocks": len(blocks_of(shards, chunk_rows)),
            "scored_now": len(pending),
            "executor": runner.name,
            "workers": runner.workers if runner.name != "local" else 1,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if runner.gpus_per_worker:
            summary["gpus_per_worker"] = runner.gpus_per_worker
        write_json(folder.root / "complete.json", summary)
    return summary


def _check_prober(fitted: Path, config: SelectConfig) -> None:
    """The model folder must still be the one the heads were fitted on (its content, not its name)."""
    try:
        load_selector(fitted).check_context(Context(config, Path(fitted)))
    except ValueError as err:
        raise UserError(f"{fitted}: {err}") from None


@register
class LocalExecutor(Executor):
    """This process: each shard read once in order, the next block read and tokenised in a worker
    thread while the prober runs on this one, and each block written by a second worker while the
    next is scored. The blocks, batches and results are those of the plain loop."""

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None, gpus_per_worker: float = 0.0) -> None:
        super().__init__(workers, threads, gpus_per_worker)
        if self.gpus_per_worker:
            raise UserError("GPUs per worker are for --executor ray; the local executor uses --device")

    def score(self, job: ScoringJob) -> None:
        scorer = BlockScorer(job.fitted, job.config, self.threads)
        shards, pending = job.shards, job.pending

        def read() -> Iterator[tuple[BlockRows, list[list[int]]]]:
            for index, shard in enumerate(shards):
                mine = [b for b in pending if b.shard == index]
                for rows in read_blocks(shard, index, mine, job.config.fields) if mine else ():
                    yield rows, scorer.tokenize(rows)

        with progress_bar() as bar, BlockWrites(job.folder, job.features) as writes:
            task = bar.add_task("scoring", total=sum(b.stop - b.start for b in pending), info="rows")
            for rows, ids in ahead(read()):
                frame, arrays = scorer.score(rows, ids)
                writes.put(rows.block, frame, arrays)
                bar.update(task, advance=rows.block.stop - rows.block.start)


class BlockWrites:
    """Writes finished blocks in a worker thread, one at a time and in order, so the next block is
    scored meanwhile. Leaving the `with` waits for the last write, also after a failure (a scored
    block is never lost), and a failed write stops the run at the next block."""

    def __init__(self, folder: ScoreFolder, features: bool) -> None:
        self.folder, self.features = folder, features
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="daar-block-write")
        self.last: Future | None = None

    def __enter__(self) -> BlockWrites:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.last is not None:
                self.last.result()
        finally:
            self.worker.shutdown(wait=True)

    def put(self, block: Block, frame: pd.DataFrame, arrays: dict[str, np.ndarray] | None) -> None:
        if self.last is not None:
            self.last.result()  # at most one block waits to be written
        self.last = self.worker.submit(self.folder.write_block, block, frame, arrays if self.features else None)


_DONE = object()


def ahead(items: Iterator, depth: int = 1) -> Iterator:
    """`items`, produced by a worker thread up to `depth` items ahead of the consumer; an error in
    the worker is raised here, and a consumer that stops early stops the worker."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((_DONE, None))
        except BaseException as err:  # handed to the consumer, raised there
            slots.put((_DONE, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # the files it holds open

    worker = threading.Thread(target=produce, name="daar-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, err = slots.get()
            if item is _DONE:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # let a producer blocked on a full queue see the stop
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.1)
