"""`daar coevolve`: rounds of DaaR selection in which the tuned learner becomes the next prober.

Options override a YAML config of CoevolveConfig (select:, tune:, eval:, rounds, ...), and `--set`
reaches any key of it; only what the user typed overrides, so defaults live in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from daar.config import load_settings_file, old_option, parse_set_option, set_dotted
from daar.errors import UserError, friendly
from daar.utils.progress import console


def register(app: typer.Typer) -> None:
    app.command("coevolve")(friendly(coevolve_command))


def coevolve_command(
    pool: Annotated[Path, typer.Argument(help="Pool file (any format `daar select` reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the rounds, the selection and rounds.csv.")],
    rounds: Annotated[int | None, typer.Option(help="Rounds of probe -> select -> tune (default 3).")] = None,
    per_round: Annotated[int | None, typer.Option(help="Rows added per round.")] = None,
    ratio: Annotated[float | None, typer.Option(help="Total fraction kept, spread over the rounds (0.2).")] = None,
    model: Annotated[str | None, typer.Option(help="Base model: alias, local folder or hub id.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON of settings: select, tune, eval, rounds, ...")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any setting: key=value, dotted.")] = None,
    examples_file: Annotated[
        Path | None, typer.Option(help="Example rows per domain instead of generating them.")
    ] = None,
    seeds_file: Annotated[Path | None, typer.Option(hidden=True, help="Old name of --examples-file.")] = None,
    learner: Annotated[str | None, typer.Option(help="restart (default: tune the base anew) or continue.")] = None,
    examples: Annotated[
        str | None, typer.Option(help="keep (default: round 1's domain examples) or regenerate.")
    ] = None,
    seeds: Annotated[str | None, typer.Option(hidden=True, help="Old name of --examples.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Selection strategy per round, as in `daar select`.")] = None,
    sample: Annotated[int | None, typer.Option(help="Rounds draw from a seeded sample of this many rows.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Benchmarks after each round, comma-separated, or all.")] = None,
    mode: Annotated[str | None, typer.Option(help="Evaluation mode: nll (default) or generate.")] = None,
    limit: Annotated[int | None, typer.Option(help="Items per benchmark (default 100).")] = None,
    evaluate: Annotated[bool, typer.Option(help="Evaluate the learner after every round.")] = True,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda, for probing, tuning and evaluation.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Feature/stage cache (default: the shared user cache).")
    ] = None,
    show_domain_field: Annotated[
        str | None, typer.Option(help="Row field with true domains, shown in rounds.csv only.")
    ] = None,
) -> None:
    """Select POOL's rows over several rounds, the learner tuned on each round's selection probing the next."""
    from daar.coevolve import Coevolution, CoevolveConfig

    data = load_settings_file(config)
    named = {
        "rounds": rounds,
        "per_round": per_round,
        "select.ratio": ratio,
        "select.model": model,
        "select.examples_file": old_option(examples_file, seeds_file, "--seeds-file", "--examples-file"),
        "select.strategy": strategy,
        "select.sample": sample,
        "learner": learner,
        "examples": old_option(examples, seeds, "--seeds", "--examples"),
        "eval.tasks": tasks.split(",") if tasks and tasks != "all" else tasks,
        "eval.mode": mode,
        "eval.limit": limit,
    }
    named["device"] = device
    set_dotted(data, named | parse_set_option(set_ or []))
    if not evaluate:
        data["eval"] = None
    try:
        settings = CoevolveConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise UserError(f"invalid setting {where}: {first['msg']}") from None
    result = Coevolution(settings).run(pool, out, cache_dir=cache_dir, show_domain_field=show_domain_field)
    _print_summary(result.manifest, out)


def _print_summary(manifest: dict[str, Any], out: Path) -> None:
    counts = manifest["counts"]
    console.print(
        f"[bold]coevolve[/]: {counts['rows_in']} rows in, {counts['selected']} selected over "
        f"{len([r for r in manifest['rounds'] if r['round'] > 0])} rounds, {counts['not_selected']} not selected, "
        f"{counts['rejected']} rejected"
    )
    rows = manifest["rounds"]
    scores = [k for k in rows[-1] if k.startswith("score_")] if rows else []
    mix = [k for k in rows[-1] if k.startswith("mix_")] if rows else []
    table = Table(title="rounds", show_edge=False)
    for column in ["round", "rows_total", *mix, *scores]:
        table.add_column(column.removeprefix("score_").removeprefix("mix_"), justify="right")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in ["round", "rows_total", *mix, *scores]))
    console.print(table)
    console.print(f"outputs in {out}/: selected.jsonl, rounds.csv, round-*/, scores.parquet, manifest.json")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
