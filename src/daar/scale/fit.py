"""`daar fit`: the fitted DaaR state (seeds, centroids, pseudo-labels, probe and reward heads) from
a probe sample of a pool of any size, so that scoring can then run anywhere, block by block.

The probe sample is drawn exactly as `daar select` draws its probe set (daar.probe.probe_rows over
the usable rows, in pool order), in two passes over the pool that keep only the sample in memory:
the first counts the usable rows, the second keeps the drawn ones. Rows with an id seen before
count as usable here (only the cut finds duplicates), so on a pool with duplicate ids the sample
can differ from the in-memory one. Only the sample's features are computed, cached in the fit's
cache folder like every other stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daar.config import SelectConfig
from daar.errors import UserError
from daar.probe.domains import probe_rows
from daar.read import Pool, PoolError, Record
from daar.scale.shards import Shard, blocks_of, plan_shards, read_blocks, shard_paths
from daar.select.base import FITTED_SETTINGS as SETTINGS
from daar.select.base import Context, make_selector, streams
from daar.utils.cache import shared_cache, write_json
from daar.utils.lock import folder_lock
from daar.utils.progress import progress_bar

READ_ROWS = 65536  # rows parsed at a time while sampling


def usable_records(shards: list[Shard], config: SelectConfig, description: str) -> Iterator[Record]:
    with progress_bar(transient=True) as bar:
        task = bar.add_task(description, total=sum(s.rows for s in shards), info="rows")
        for index, shard in enumerate(shards):
            mine = [b for b in blocks_of(shards, READ_ROWS) if b.shard == index]
            for rows in read_blocks(shard, index, mine, config.fields):
                yield from rows.records
                bar.update(task, advance=rows.block.stop - rows.block.start)


def probe_sample(shards: list[Shard], config: SelectConfig) -> Pool:
    """The usable rows `daar select` would put in its probe set, read in two passes."""
    usable = sum(1 for _ in usable_records(shards, config, "counting usable rows"))
    if not usable:
        raise PoolError(f"{shards[0].path}: no usable row among {sum(s.rows for s in shards)}")
    wanted = set(probe_rows(usable, config.probe_size, config.seed).tolist())
    records = [r for i, r in enumerate(usable_records(shards, config, "reading the probe sample")) if i in wanted]
    return Pool(shards[0].path, records, [], len(records), "")


def fit_pool(
    config: SelectConfig, pool: str | Path | list[Path], out: Path, cache_dir: Path | None = None
) -> dict[str, Any]:
    """Fit `config.method` on `pool`'s probe sample and save the state to `out` (plus the settings,
    select.json), for `daar score`; a method that cannot score block by block is refused."""
    reason = streams(config.method)
    if reason is not None:
        raise UserError(f"method {config.method!r} cannot score a pool block by block: {reason}")
    out = Path(out)
    cache = Path(cache_dir) if cache_dir else shared_cache()
    started = time.perf_counter()
    shard_paths(pool)  # the pool exists: checked before any folder is made
    with folder_lock(out.parent / f".{out.name}.lock", "daar fit"):  # one fit per folder; cache entries lock themselves
        shards = plan_shards(pool)
        sample = probe_sample(shards, config)
        ctx = Context(config, cache)
        selector = make_selector(config.method).fit(sample, ctx)
        (out / SETTINGS).unlink(missing_ok=True)  # a folder without its settings is never scored
        selector.save(out)
        summary = {
            "pool": [s.to_json() for s in shards],
            "probe_rows": len(sample),
            "stages": ctx.timer.summary(),
            "seconds": round(time.perf_counter() - started, 3),
            **selector.artifacts().manifest,
        }
        write_json(out / "fit.json", summary)
        write_json(out / SETTINGS, config.model_dump(mode="json"))
    return summary
