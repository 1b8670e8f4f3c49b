"""`daar select`: one command from a pool file to a selected subset (DaaR or any baseline).

Options map one-to-one onto SelectConfig fields; a YAML config and `--set key=value` overrides
are merged underneath them, so anything in the config can be set from the command line. Errors a
user can fix (bad file, unknown method, too few examples) end with one red line and exit code 2
(daar.errors); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from daar import options
from daar.config import build_settings, old_option, prober_options
from daar.errors import UserError, friendly
from daar.utils.progress import console


@friendly
def select_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for selected.jsonl, scores, report.")],
    pool: Annotated[
        str | None,
        typer.Argument(
            help="Pool: a .jsonl(.gz), .json(.gz), .parquet, .arrow or .csv file, a folder or a glob of shards, "
            "a datasets folder, or a hub dataset id (with --split / --subset)."
        ),
    ] = None,
    split: options.Split = None,
    subset: options.Subset = None,
    output_format: options.OutputFormat = "jsonl",
    scores: Annotated[
        Path | None, typer.Option(help="Cut the scores of `daar score` instead of reading a pool.")
    ] = None,
    executor: Annotated[
        str | None, typer.Option(help="Score block by block: local or ray (default for folders and globs: local).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray actors scoring at once (--executor ray).")] = 1,
    threads: Annotated[int | None, typer.Option(help="Torch threads per scoring worker.")] = None,
    gpus_per_worker: Annotated[
        float, typer.Option(help="GPUs per Ray actor (0.5: two share one; 0: CPU); the fit gets as many.")
    ] = 0.0,
    chunk_rows: Annotated[int | None, typer.Option(help="Rows per scored block (default 4096).")] = None,
    method: Annotated[str | None, typer.Option(help="Selector: daar (default) or a baseline, see --list.")] = None,
    config: options.Config = None,
    set_: options.Set = None,
    model: options.Model = None,
    adapter: options.Adapter = None,
    domains: options.Domains = None,
    examples_file: options.ExamplesFile = None,
    seeds_file: options.SeedsFile = None,
    clip_layer: options.ClipLayer = None,
    probe_size: options.ProbeSize = None,
    ratio: Annotated[float | None, typer.Option(help="Fraction of rows to keep (default 0.2).")] = None,
    count: Annotated[int | None, typer.Option(help="Number of rows to keep (wins over --ratio).")] = None,
    budget_tokens: Annotated[
        int | None, typer.Option(help="Keep rows while their training tokens fit this budget (replaces --ratio).")
    ] = None,
    match_tokens: Annotated[
        Path | None, typer.Option(help="Token budget = the training tokens of this run's selected.jsonl.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="balanced (shares per pseudo-domain), overall (top rows) or customized.")
    ] = None,
    shares: Annotated[
        str | None, typer.Option(help="balanced: proportional (to each pseudo-domain's rows, default) or equal.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target domain of the customized strategy.")] = None,
    target_fraction: Annotated[float | None, typer.Option(help="Customized: share of the target group.")] = None,
    other_fraction: Annotated[float | None, typer.Option(help="Customized: share of every other group.")] = None,
    seed: options.Seed = None,
    sample: Annotated[int | None, typer.Option(help="Score only a seeded sample of this many rows.")] = None,
    batch_tokens: Annotated[int | None, typer.Option(help="Tokens per prober batch (default: by model size).")] = None,
    max_length: options.MaxLength = None,
    device: options.Device = None,
    dtype: options.Dtype = None,
    field: options.Field = None,
    trust_remote_code: options.TrustRemoteCode = False,
    cache_dir: options.CacheDir = None,
    show_domain_field: Annotated[
        str | None, typer.Option(help="Row field with true domains, shown in the summary only.")
    ] = None,
    show_field: Annotated[
        list[str] | None,
        typer.Option(help="Row field whose values' share kept is shown (repeatable); never read by a method."),
    ] = None,
    report: Annotated[bool, typer.Option(help="Write report.html at the end.")] = True,
) -> None:
    """Select the rows of POOL that DaaR (or --method) rates highest; write them to --out."""
    cut = {
        "ratio": ratio,
        "count": count,
        "strategy": strategy,
        "shares": shares,
        "target": target,
        "target_fraction": target_fraction,
        "other_fraction": other_fraction,
    }
    from daar.write.formats import check_format

    if scores is not None:
        if pool is not None:
            raise UserError("give either a POOL or --scores, not both")
        from daar.scale.cut import select_from_scores

        overrides = {k: v for k, v in cut.items() if v is not None}
        manifest = select_from_scores(scores, out, overrides, output_format=check_format(output_format))
        _print_counts(manifest, out)
        return
    if pool is None:
        raise UserError("missing POOL (a file, a folder or a glob of shards), or --scores DIR")
    if gpus_per_worker and executor != "ray":
        raise UserError("--gpus-per-worker is for --executor ray; without Ray, --device picks the GPU")
    named = {
        **cut,
        **prober_options(
            model,
            adapter,
            old_option(examples_file, seeds_file, "--seeds-file", "--examples-file"),
            clip_layer,
            probe_size,
            seed,
            max_length,
            device,
            dtype,
            trust_remote_code,
        ),
        "method": method,
        "budget_tokens": budget_tokens,
        "match_tokens": match_tokens,
        "sample": sample,
        "batch_tokens": batch_tokens,
    }
    settings = build_settings(config, set_, field, domains, named)
    check_format(output_format)
    from daar.read import DatasetPool, open_pool, pool_files
    from daar.select.base import make_selector, streams

    make_selector(settings.method)  # unknown names fail here, before any work
    source = open_pool(pool, split, subset)
    # a loaded dataset is read in memory, as a file is; a folder or glob of shards block by block
    shards = not isinstance(source, DatasetPool) and not Path(source).is_file()
    shards = shards and (Path(source).is_dir() or any(c in str(source) for c in "*?["))
    if executor is not None or shards:
        reason = streams(settings.method)
        if reason is not None:
            where = "block-by-block selection (folders, globs, --executor)"
            raise UserError(f"{where} cannot run {settings.method}: {reason}")
        if settings.sample is not None:
            raise UserError("block-by-block selection (folders, globs, --executor) scores every row: drop --sample")
        if settings.budget_tokens is not None or settings.match_tokens is not None:
            raise UserError("a token budget needs the rows in memory: select from one file, without --executor")
        from daar.scale.stream import run_streaming

        manifest = run_streaming(
            settings,
            pool_files(source),
            out,
            executor=executor or "local",
            workers=workers,
            threads=threads,
            gpus_per_worker=gpus_per_worker,
            chunk_rows=chunk_rows,
            cache_dir=cache_dir,
            output_format=output_format,
        )
        _print_counts(manifest, out)
        return
    from daar.pipeline import run_select

    result = run_select(
        settings,
        source,
        out,
        cache_dir=cache_dir,
        show_domain_field=show_domain_field,
        report=report,
        output_format=output_format,
        show_fields=show_field or (),
    )
    _print_summary(result.manifest, out)


def _print_counts(manifest: dict[str, Any], out: Path) -> None:
    counts = manifest["counts"]
    console.print(
        f"[bold]daar[/]: {counts['rows_in']} rows in, {counts['selected']} selected, "
        f"{counts['not_selected']} not selected, {counts['rejected']} rejected "
        f"({manifest['wall_seconds']:.1f} s for the cut)"
    )
    console.print(_outputs(manifest, out, ["scores.parquet", "rejected.jsonl", "manifest.json"]))


def _outputs(manifest: dict[str, Any], out: Path, rest: list[str]) -> str:
    """The outputs line: the selection's files (and dataset_info.json when written), then `rest`."""
    outputs = manifest.get("outputs") or {}
    files = list((outputs.get("rows") or {"selected.jsonl": 0}).keys())
    if (outputs.get("llamafactory") or {}).get("dataset_info"):
        files.append(outputs["llamafactory"]["dataset_info"])
    return f"outputs in {out}/: {', '.join(files + rest)}"


def _print_summary(manifest: dict[str, Any], out: Path) -> None:
    counts = manifest["counts"]
    console.print(
        f"[bold]{manifest['method']}[/]: {counts['rows_in']} rows in, {counts['selected']} selected, "
        f"{counts['not_selected']} not selected ({counts['sampled_out']} outside the sample), "
        f"{counts['rejected']} rejected"
    )
    stages = Table(title="time per stage", show_edge=False)
    for column in ("stage", "seconds", "cached"):
        stages.add_column(column, justify="right" if column != "stage" else "left")
    for name, info in manifest["stages"].items():
        stages.add_row(name, f"{info['seconds']:.1f}", "yes" if info["cached"] else "")
    stages.add_row("[bold]total", f"[bold]{manifest['wall_seconds']:.1f}", "")
    console.print(stages)
    if "probe" in manifest:
        probe, reward = manifest["probe"], manifest.get("reward")
        fitted = f"probe: validation accuracy {probe.get('val_accuracy', float('nan')):.3f}; "
        if reward is not None:
            fitted += (
                f"reward model: validation MSE {reward.get('val_mse', float('nan')):.4f} (predicting the mean: "
                f"{reward.get('val_mse_of_mean', float('nan')):.4f}); "
            )
        console.print(fitted + f"pseudo-domains {probe['pseudo_domain_sizes']}")
    budget = manifest.get("token_budget")
    if budget:
        console.print(
            f"token budget {budget['budget']:,}: {budget['rows']:,} rows holding {budget['selected_tokens']:,} "
            "training tokens"
        )
    truth = manifest.get("ground_truth")
    if truth:
        mix = Table(title=f"domain mix by the rows' '{truth['field']}' field (shown only, never used)", show_edge=False)
        for column in ("domain", "pool", "selected", "selected %"):
            mix.add_column(column, justify="right" if column != "domain" else "left")
        for name, n in truth["pool"]["counts"].items():
            chosen = truth["selected"]["counts"].get(name, 0)
            share = 100 * chosen / max(1, truth["selected"]["rows"])
            mix.add_row(name, str(n), str(chosen), f"{share:.1f}")
        mix.add_row("entropy", f"{truth['pool']['entropy']:.3f}", f"{truth['selected']['entropy']:.3f}", "")
        console.print(mix)
    for name, shown in manifest.get("shown_fields", {}).items():
        table = Table(title=f"share kept of each value of the rows' '{name}' field (shown only, never used)")
        for column in (name, "rows", "kept", "share kept %"):
            table.add_column(column, justify="right" if column != name else "left")
        for value, counts in shown["values"].items():
            table.add_row(value, str(counts["rows"]), str(counts["kept"]), f"{100 * counts['share_kept']:.1f}")
        table.add_row("[bold]all", str(shown["rows"]), str(shown["kept"]), f"{100 * shown['kept'] / shown['rows']:.1f}")
        console.print(table)
    for warning in manifest.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning['message']}", highlight=False, soft_wrap=True)
    console.print(_outputs(manifest, out, ["scores.parquet", "rejected.jsonl", "manifest.json", "report.html"]))


def register(app: typer.Typer) -> None:
    app.command("select")(select_command)
