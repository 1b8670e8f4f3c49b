"""`daar analyze`, `daar pools` and `daar map`: the paper's analysis part on any pool or selection.

Labels come from a field of the rows (ground truth, e.g. `domain`: fine here, these commands
measure, they do not select by it) or from a fitted run's pseudo-domains. e(x) comes from the same
cached prober pass as `daar select` (Context.features), so analysing a pool a run already read
costs nothing. Bad input ends with one red line and exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from daar.analyze.diversity import domain_mix, encode_labels, kept_per_domain, row_measures, summarize
from daar.analyze.maps import embed_2d, plot_map
from daar.analyze.pools import contrastive_pool, diversity_ranks, diversity_score, parse_window
from daar.config import SelectConfig, load_config
from daar.errors import UserError, friendly
from daar.read import Pool, read_pool
from daar.select.base import Context
from daar.utils.cache import shared_cache, write_json
from daar.write.run import RunWriter

out_console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[str | None, typer.Option("--model", help="Model alias, folder or hub id.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-tokens", help="Token budget per prober batch.")]
MaxLenOpt = Annotated[int | None, typer.Option("--max-length", help="Tokens read per row.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Feature cache (default: the shared user cache).")]
LabelsOpt = Annotated[str | None, typer.Option("--labels", help="Row field holding the domain label.")]
RunOpt = Annotated[Path | None, typer.Option("--run", help="Run folder whose pseudo-domains label the rows.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config; its model settings are used.")]


def _setup(
    config: Path | None,
    model: str | None,
    device: str | None,
    batch_tokens: int | None,
    max_length: int | None,
    cache_dir: Path | None,
) -> Context:
    overrides = {"model": model, "device": device, "batch_tokens": batch_tokens, "max_length": max_length}
    cfg: SelectConfig = load_config(config, overrides)
    return Context(cfg, Path(cache_dir) if cache_dir else shared_cache())


def field_labels(pool: Pool, field: str) -> list[str | None]:
    """The value of `field` per row (None where a row lacks it); unknown field -> ValueError."""
    values = [r.raw.get(field) for r in pool.records]
    if all(v is None for v in values):
        known = sorted({k for r in pool.records[:200] for k in r.raw})
        raise UserError(f"unknown label field {field!r}: no row has it (fields seen: {', '.join(known)})")
    return [None if v is None else str(v) for v in values]


def run_labels(pool: Pool, run_dir: Path) -> list[str | None]:
    """Pseudo-domains of a fitted run, joined on row id (None for rows the run did not score)."""
    import pandas as pd

    path = Path(run_dir) / "scores.parquet"
    if not path.exists():
        raise UserError(f"{run_dir}: no scores.parquet; is it a `daar select` run folder?")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's errors for a damaged file are ValueErrors
        raise UserError(f"{path}: cannot be read as parquet ({err})") from None
    if "pseudo_domain" not in table.columns or "id" not in table.columns:
        raise UserError(f"{path}: needs columns 'id' and 'pseudo_domain' (method without pseudo-domains?)")
    mapping = dict(zip(table["id"].astype(str), table["pseudo_domain"].astype(str), strict=True))
    return [mapping.get(r.id) for r in pool.records]


def _labels(pool: Pool, field: str | None, run_dir: Path | None) -> tuple[list[str | None], str]:
    if field:
        return field_labels(pool, field), f"field:{field}"
    if run_dir:
        return run_labels(pool, run_dir), f"run:{run_dir}"
    raise UserError("give --labels FIELD (e.g. domain) or --run RUN_DIR for pseudo-domains")


@friendly
def analyze_command(
    data: Annotated[Path, typer.Argument(help="A pool or a selection (e.g. RUN/selected.jsonl).")],
    labels: LabelsOpt = None,
    run: RunOpt = None,
    pool_path: Annotated[Path | None, typer.Option("--pool", help="The pool DATA was selected from.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="JSON (default RUN/analysis.json, ./analysis.json).")
    ] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    batch_tokens: BatchOpt = None,
    max_length: MaxLenOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Inter-/intra-diversity and domain mix of a pool or selection (and what it kept of a pool)."""
    ctx = _setup(config, model, device, batch_tokens, max_length, cache_dir)
    data_pool = read_pool(data, ctx.config.fields)
    data_labels, label_source = _labels(data_pool, labels, run)
    report: dict[str, Any] = {"input": str(data), "labels": label_source, "model": ctx.config.model}
    if pool_path is not None:
        full = read_pool(pool_path, ctx.config.fields)
        full_labels, _ = _labels(full, labels, run)
        where = {rid: i for i, rid in enumerate(full.ids)}
        matched = np.array([where.get(rid, -1) for rid in data_pool.ids])
        report["not_in_pool"] = int((matched < 0).sum())
        usable_pool = np.array([lab is not None for lab in full_labels])
        codes, names = encode_labels([lab for lab in full_labels if lab is not None])
        pool_codes = np.full(len(full), -1)
        pool_codes[usable_pool] = codes
        emb = ctx.features(full).emb
        sel_rows = matched[(matched >= 0)]
        sel_rows = sel_rows[usable_pool[sel_rows]]
        report["unlabelled"] = int((~usable_pool).sum())
        report["pool"] = {
            "path": str(pool_path),
            "diversity": summarize(emb[usable_pool], pool_codes[usable_pool], names),
            "mix": domain_mix(pool_codes[usable_pool], names),
        }
        report["diversity"] = summarize(emb[sel_rows], pool_codes[sel_rows], names)
        report["mix"] = domain_mix(pool_codes[sel_rows], names)
        mask = np.zeros(len(full), dtype=bool)
        mask[sel_rows] = True
        report["kept_per_domain"] = kept_per_domain(pool_codes[usable_pool], mask[usable_pool], names)
    else:
        usable = np.array([lab is not None for lab in data_labels])
        codes, names = encode_labels([lab for lab in data_labels if lab is not None])
        emb = ctx.features(data_pool).emb[usable]
        report["unlabelled"] = int((~usable).sum())
        report["diversity"] = summarize(emb, codes, names)
        report["mix"] = domain_mix(codes, names)
    report["rows"] = report["mix"]["rows"]
    target = out or ((run / "analysis.json") if run else Path("analysis.json"))
    write_json(target, report)
    _print_analysis(report)
    err_console.print(f"wrote {target}")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_analysis(report: dict[str, Any]) -> None:
    div, mix = report["diversity"], report["mix"]
    table = Table(title=f"{report['input']} ({report['rows']} rows, labels {report['labels']})")
    for col in ("domain", "rows", "fraction", "intra-div", "inter-div", "kept / pool"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    kept = report.get("kept_per_domain", {})
    for name in div["domains"]:
        per = div["per_domain"][name]
        k = kept.get(name)
        table.add_row(
            name,
            str(per["rows"]),
            _fmt(mix["fractions"][name]),
            _fmt(per["intra_diversity"]),
            _fmt(per["inter_diversity"]),
            f"{k['kept']} / {k['pool']}" if k else "-",
        )
    table.add_row(
        "all",
        str(div["rows"]),
        "1",
        _fmt(div["intra_diversity"]),
        _fmt(div["inter_diversity"]),
        "",
        style="bold",
    )
    out_console.print(table)
    out_console.print(
        f"domain entropy {mix['entropy']:.4f} nats (normalised {_fmt(mix['normalized_entropy'])})"
        + (
            f"; pool inter {_fmt(report['pool']['diversity']['inter_diversity'])}, intra "
            f"{_fmt(report['pool']['diversity']['intra_diversity'])}"
            if "pool" in report
            else ""
        )
    )


@friendly
def pools_command(
    pool_path: Annotated[Path, typer.Argument(help="Pool with known domains.")],
    by: Annotated[str, typer.Option("--by", help="inter or intra.")],
    window: Annotated[str, typer.Option("--window", help="LOWER:UPPER ranks (0:2000) or fractions (0.8:1.0)")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    labels: Annotated[str, typer.Option("--labels", help="Row field holding the domain.")] = "domain",
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    batch_tokens: BatchOpt = None,
    max_length: MaxLenOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """A contrastive pool: per domain, the rows ranked [LOWER, UPPER) by diversity (rank 0 = most diverse)."""
    if by not in ("inter", "intra"):
        raise UserError(f"--by must be 'inter' or 'intra', got {by!r}")
    win = parse_window(window)
    ctx = _setup(config, model, device, batch_tokens, max_length, cache_dir)
    pool = read_pool(pool_path, ctx.config.fields)
    values = field_labels(pool, labels)
    usable = np.array([v is not None for v in values])
    rejected = [{"position": r.position, "id": r.id, "reason": r.reason} for r in pool.rejected]
    rejected += [
        {"position": r.position, "id": r.id, "reason": f"no '{labels}' label"}
        for r, ok in zip(pool.records, usable, strict=True)
        if not ok
    ]
    labelled = pool.subset(np.flatnonzero(usable))
    codes, names = encode_labels([v for v in values if v is not None])
    emb = ctx.features(labelled).emb
    chosen = contrastive_pool(emb, codes, by, win, len(names))  # type: ignore[arg-type]
    selected = np.zeros(len(labelled), dtype=bool)
    selected[chosen] = True
    with RunWriter(out, "pools", "pools") as run:
        counts = run.write_rows(
            (labelled.records[i].raw for i in np.flatnonzero(selected)),
            rejected,
            _scores_frame(labelled, codes, names, emb, by, selected),
            pool.rows_in,
            ctx.config.fields.id,
        )
        per_domain = {
            n: {"rows": int((codes == j).sum()), "selected": int(((codes == j) & selected).sum())}
            for j, n in enumerate(names)
        }
        settings = {k: ctx.config.result_dict()[k] for k in ("model", "clip_layer", "max_length", "dtype")}
        settings |= {"labels": labels, "by": by, "window": str(win), "window_fractional": win.fractional}
        manifest = run.header(settings, {"path": str(Path(pool_path).resolve()), "sha256": pool.sha256}, names)
        manifest |= {"rank_direction": "rank 0 = most diverse within its domain", "per_domain": per_domain}
        run.finish(manifest)
    out_console.print(
        f"kept {counts['selected']} of {counts['rows_in']} rows ({counts['rejected']} rejected) "
        f"by {by}-diversity window {win}: "
        + ", ".join(f"{n} {v['selected']}/{v['rows']}" for n, v in per_domain.items())
    )
    err_console.print(f"wrote {out}")


def _scores_frame(
    pool: Pool, codes: np.ndarray, names: list[str], emb: np.ndarray, by: str, selected: np.ndarray
):
    import pandas as pd


    rows = row_measures(emb, codes, len(names))
    return pd.DataFrame(
        {
            "position": [r.position for r in pool.records],
            "id": pool.ids,
            "score": diversity_score(emb, codes, by, len(names)),  # type: ignore[arg-type]
            "rank": diversity_ranks(emb, codes, by, len(names)),  # type: ignore[arg-type]
            "label": [names[c] for c in codes],
            "inter": rows.inter,
            "intra": rows.intra,
            "selected": selected,
        }
    )


@friendly
def map_command(
    pool_path: Annotated[Path, typer.Argument(help="Pool to draw.")],
    labels: LabelsOpt = None,
    run: RunOpt = None,
    selection: Annotated[Path | None, typer.Option("--selection", help="selected.jsonl to highlight.")] = None,
    out: Annotated[Path, typer.Option("--out", help="PNG; coordinates go beside it (.json).")] = Path("map.png"),
    method: Annotated[str, typer.Option("--method", help="auto (UMAP if installed, else tsne), tsne, umap")] = "auto",
    max_points: Annotated[int, typer.Option("--max-points", min=10, help="Rows drawn at most (seeded).")] = 3000,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    batch_tokens: BatchOpt = None,
    max_length: MaxLenOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """A t-SNE/UMAP map of e(x) coloured by domain or pseudo-domain, a selection highlighted."""
    if method not in ("auto", "tsne", "umap"):
        raise UserError(f"--method must be auto, tsne or umap, got {method!r}")
    ctx = _setup(config, model, device, batch_tokens, max_length, cache_dir)
    pool = read_pool(pool_path, ctx.config.fields)
    codes = names = None
    if labels or run:
        values, _ = _labels(pool, labels, run)
        names = sorted({v for v in values if v is not None})
        if any(v is None for v in values):
            names.append("(unlabelled)")
        codes = np.array([names.index(v if v is not None else "(unlabelled)") for v in values])
    selected = None
    if selection is not None:
        wanted = set(read_pool(selection, ctx.config.fields).ids)
        selected = np.array([rid in wanted for rid in pool.ids])
        if not selected.any():
            raise UserError(f"{selection}: none of its row ids is in {pool_path}")
    emb = ctx.features(pool).emb
    seed = ctx.config.seed
    result = embed_2d(emb, seed=seed, method=method, max_points=max_points, selected=selected)  # type: ignore[arg-type]
    title = f"{result.method} of e(x): {pool_path.name}"
    if selection is not None:
        title += f", selection {selection.name}"
    plot_map(result, out, codes, names, selected, title)
    data = result.to_json(codes, names, selected)
    for point in data["points"]:
        point["id"] = pool.records[point["index"]].id
    write_json(out.with_suffix(".json"), data)
    out_console.print(f"{result.method} map of {len(result.indices)} of {len(pool)} rows -> {out}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_command)
    app.command("pools")(pools_command)
    app.command("map")(map_command)
