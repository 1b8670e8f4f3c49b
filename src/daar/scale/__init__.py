"""Pools of any size: fit on a probe sample, score block by block (locally or on Ray), cut exactly.

`run_streaming` is `daar select` built from these parts: `daar fit` into CACHE/fitted, `daar
score` into CACHE/scores (resumable per block), then the cut into the run folder. The executor
(daar.scale.executors) holds its resources (a Ray cluster) across the fit and the scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daar.config import SelectConfig


def run_streaming(
    config: SelectConfig,
    pool: str | Path,
    out_dir: Path,
    *,
    executor: str = "local",
    workers: int = 1,
    threads: int | None = None,
    gpus_per_worker: float = 0.0,
    chunk_rows: int | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    from daar.scale.cut import select_from_scores
    from daar.scale.executors import make_executor
    from daar.scale.score import DEFAULT_CHUNK_ROWS, score_pool

    runner = make_executor(executor, workers=workers, threads=threads, gpus_per_worker=gpus_per_worker)
    cache = Path(cache_dir) if cache_dir else Path(out_dir) / "cache"
    fitted, scores = cache / "fitted", cache / "scores"
    with runner.session():
        runner.fit(config, pool, fitted, cache)
        summary = score_pool(pool, fitted, scores, executor=runner, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS)
    return select_from_scores(scores, out_dir, extra={"scoring": summary})
