"""Pools of any size: fit on a probe sample, score block by block (locally or on Ray), cut exactly.

`run_streaming` is `daar select` built from these parts: `daar fit` into CACHE/fitted, `daar
score` into CACHE/scores (resumable per block), then the cut into the run folder.
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
    chunk_rows: int | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    from daar.scale.cut import select_from_scores
    from daar.scale.fit import fit_pool
    from daar.scale.score import DEFAULT_CHUNK_ROWS, score_pool

    cache = Path(cache_dir) if cache_dir else Path(out_dir) / "cache"
    fitted, scores = cache / "fitted", cache / "scores"
    fit_pool(config, pool, fitted, cache)
    summary = score_pool(
        pool,
        fitted,
        scores,
        executor=executor,
        workers=workers,
        threads=threads,
        chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
    )
    return select_from_scores(scores, out_dir, extra={"scoring": summary})
