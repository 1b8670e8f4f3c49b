"""`daar select` on a pool of any size, built from the block-by-block parts.

`daar fit` into OUT/work/fitted, `daar score` into OUT/work/scores (resumable per block), then
the cut into the run folder OUT; features of the probe sample go to the shared cache. The executor
(daar.scale.executors) holds its resources (a Ray cluster) across the fit and the scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daar.config import SelectConfig
from daar.scale.cut import select_from_scores
from daar.scale.executors import make_executor
from daar.scale.score import DEFAULT_CHUNK_ROWS, score_pool


def run_streaming(
    config: SelectConfig,
    pool: str | Path | list[Path],
    out_dir: Path,
    *,
    executor: str = "local",
    workers: int = 1,
    threads: int | None = None,
    gpus_per_worker: float = 0.0,
    chunk_rows: int | None = None,
    cache_dir: Path | None = None,
    output_format: str = "jsonl",
) -> dict[str, Any]:
    runner = make_executor(executor, workers=workers, threads=threads, gpus_per_worker=gpus_per_worker)
    work = Path(out_dir) / "work"  # this run's fitted state and block scores, resumable
    fitted, scores = work / "fitted", work / "scores"
    with runner.session():
        runner.fit(config, pool, fitted, cache_dir)
        summary = score_pool(pool, fitted, scores, executor=runner, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS)
    return select_from_scores(scores, out_dir, extra={"scoring": summary}, output_format=output_format)
