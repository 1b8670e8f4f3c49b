"""`daar fit` and `daar score`: the two halves of `daar select` for pools of any size.

daar fit POOL --out FITTED            # examples, centroids, pseudo-labels, heads from a probe sample
daar score POOL --fitted FITTED --out SCORES [--executor ray --workers N]
daar select --scores SCORES --out RUN [--ratio/--count/--strategy ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from daar.config import build_settings, old_option, prober_options
from daar.errors import friendly
from daar.utils.progress import console


@friendly
def fit_command(
    pool: Annotated[str, typer.Argument(help="Pool: a data file, a folder or a glob of shards.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the fitted state.")],
    config: Annotated[Path | None, typer.Option(help="YAML/JSON file of settings (any SelectConfig field).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any setting: key=value, dotted.")] = None,
    model: Annotated[str | None, typer.Option(help="Local folder, cached hub id, or smollm2-135m-instruct.")] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter of --model: probe with the tuned model.")] = None,
    domains: Annotated[Path | None, typer.Option(help="YAML/JSON list of domains, with optional examples.")] = None,
    examples_file: Annotated[
        Path | None, typer.Option(help="Example rows per domain instead of generating them.")
    ] = None,
    seeds_file: Annotated[Path | None, typer.Option(hidden=True, help="Old name of --examples-file.")] = None,
    clip_layer: Annotated[int | None, typer.Option(help="Decoder layers the probe reads (default 3).")] = None,
    probe_size: Annotated[int | None, typer.Option(help="Rows drawn for the probe set (default 5000).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed for sampling, clustering, heads.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens read per row (default 512).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="auto (bf16 on GPUs and bf16-capable CPUs), float32, bfloat16 or float16.")
    ] = None,
    field: Annotated[list[str] | None, typer.Option(help="Field mapping, e.g. instruction=prompt.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Feature/stage cache (default: the shared user cache).")
    ] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own code (off by default).")] = False,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (a Ray task, with --gpus).")] = "local",
    gpus: Annotated[float, typer.Option(help="GPUs of the Ray fit task (--executor ray; 0: fit here).")] = 0.0,
) -> None:
    """Fit DaaR on a probe sample of POOL; `daar score` then scores any pool with it."""
    from daar.scale.executors import make_executor

    examples = old_option(examples_file, seeds_file, "--seeds-file", "--examples-file")
    named = prober_options(
        model, adapter, examples, clip_layer, probe_size, seed, max_length, device, dtype, trust_remote_code
    )
    settings = build_settings(config, set_, field, domains, named)
    runner = make_executor(executor, gpus_per_worker=gpus)
    with runner.session():
        summary = runner.fit(settings, pool, out, cache_dir)
    console.print(f"fitted on {summary['probe_rows']} probe rows in {summary['seconds']:.1f} s: {out}")


@friendly
def score_command(
    pool: Annotated[str, typer.Argument(help="Pool: a data file, a folder or a glob of shards.")],
    fitted: Annotated[Path, typer.Option(help="Folder written by `daar fit` (or RUN/fitted of `daar select`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores folder (resumed when rerun).")],
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
    from daar.scale.score import score_pool

    summary = score_pool(
        pool,
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
