"""`daar fit` and `daar score`: the two halves of `daar select` for pools of any size.

daar fit POOL --out FITTED            # examples, centroids, pseudo-labels, heads from a probe sample
daar score POOL --fitted FITTED --out SCORES [--executor ray --workers N]
daar select --scores SCORES --out RUN [--ratio/--count/--strategy ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from daar import options
from daar.config import build_settings, old_option, prober_options
from daar.errors import friendly
from daar.utils.progress import console


@friendly
def fit_command(
    pool: Annotated[str, typer.Argument(help="Pool: a data file, a folder, a glob of shards or a dataset id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the fitted state.")],
    split: options.Split = None,
    subset: options.Subset = None,
    config: options.Config = None,
    set_: options.Set = None,
    model: options.Model = None,
    adapter: options.Adapter = None,
    domains: options.Domains = None,
    examples_file: options.ExamplesFile = None,
    seeds_file: options.SeedsFile = None,
    clip_layer: options.ClipLayer = None,
    probe_size: options.ProbeSize = None,
    seed: options.Seed = None,
    max_length: options.MaxLength = None,
    device: options.Device = None,
    dtype: options.Dtype = None,
    field: options.Field = None,
    cache_dir: options.CacheDir = None,
    trust_remote_code: options.TrustRemoteCode = False,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (a Ray task, with --gpus).")] = "local",
    gpus: Annotated[float, typer.Option(help="GPUs of the Ray fit task (--executor ray; 0: fit here).")] = 0.0,
) -> None:
    """Fit DaaR on a probe sample of POOL; `daar score` then scores any pool with it."""
    from daar.read import open_pool, pool_files
    from daar.scale.executors import make_executor

    examples = old_option(examples_file, seeds_file, "--seeds-file", "--examples-file")
    named = prober_options(
        model, adapter, examples, clip_layer, probe_size, seed, max_length, device, dtype, trust_remote_code
    )
    settings = build_settings(config, set_, field, domains, named)
    runner = make_executor(executor, gpus_per_worker=gpus)
    with runner.session():
        summary = runner.fit(settings, pool_files(open_pool(pool, split, subset)), out, cache_dir)
    console.print(f"fitted on {summary['probe_rows']} probe rows in {summary['seconds']:.1f} s: {out}")


@friendly
def score_command(
    pool: Annotated[str, typer.Argument(help="Pool: a data file, a folder, a glob of shards or a dataset id.")],
    fitted: Annotated[Path, typer.Option(help="Folder written by `daar fit` (or RUN/fitted of `daar select`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores folder (resumed when rerun).")],
    split: options.Split = None,
    subset: options.Subset = None,
    executor: Annotated[str, typer.Option(help="local (one process) or ray (an actor pool).")] = "local",
    workers: Annotated[int, typer.Option(help="Ray actors scoring at once.")] = 1,
    threads: Annotated[int | None, typer.Option(help="Torch threads per worker (Ray default 1).")] = None,
    gpus_per_worker: Annotated[
        float, typer.Option(help="GPUs per Ray actor: 1, or 0.5 for two actors per GPU (0: CPU).")
    ] = 0.0,
    chunk_rows: Annotated[int, typer.Option(help="Rows per block: the unit of memory, writing and resume.")] = 4096,
    features: Annotated[bool, typer.Option(help="Also write e(x) and f(x) of every row.")] = True,
) -> None:
    """Features and predicted reward of every row of POOL, written block by block to --out."""
    from daar.read import open_pool, pool_files
    from daar.scale.score import score_pool

    summary = score_pool(
        pool_files(open_pool(pool, split, subset)),
        fitted,
        out,
        executor=executor,
        workers=workers,
        threads=threads,
        gpus_per_worker=gpus_per_worker,
        chunk_rows=chunk_rows,
        features=features,
    )
    console.print(
        f"{summary['rows_in']} rows in {summary['blocks']} blocks ({summary['scored_now']} scored now) "
        f"in {summary['seconds']:.1f} s: {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_command)
    app.command("score")(score_command)
