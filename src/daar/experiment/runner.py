"""`run_experiment`: the grid of cells, then results.csv / results.md / results.png / experiment.json.

Order of work: validate what can fail cheaply (benchmark files, model, pool), draw the shared
sub-pool once, then run every cell that has no finished `cell.json` with the same key. The
outputs are rebuilt from all the cells of the plan each time, so an interrupted run followed by a
rerun gives the same files as an uninterrupted one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daar.config import FieldMap
from daar.evaluate.registry import EvalError, parse_tasks, resolve_data_dir
from daar.evaluate.runner import check_sandbox
from daar.evaluate.settings import headline_metrics
from daar.experiment.cells import BASE, Cell, cell_key, load_cell, matched_cell, plan, run_cell
from daar.experiment.compare import comparison_markdown, comparisons
from daar.experiment.config import ConfigError, ExperimentConfig
from daar.experiment.evidence import evidence_markdown
from daar.experiment.heldout import HELDOUT_FILE, draw_heldout, write_heldout
from daar.experiment.paired import benchmark_values, compare_seeds, heldout_values, seeds_markdown
from daar.experiment.parallel import auto_parallel, run_cells
from daar.experiment.plot import plot_results
from daar.experiment.table import (
    AVERAGE,
    PARTS,
    aggregate,
    column_title,
    heldout_markdown,
    mix_markdown,
    to_csv,
    to_markdown,
)
from daar.models import fingerprint, resolve_model
from daar.read import DatasetPool, file_sha256, open_pool, read_pool
from daar.read.hub import looks_like_hub_id
from daar.utils.cache import read_json, shared_cache, write_json, write_jsonl, write_text
from daar.utils.lock import folder_lock
from daar.utils.machine import machine_info, package_versions, torch_threads
from daar.utils.progress import console

MANIFEST = "experiment.json"


@dataclass
class ExperimentResult:
    """What a run did: every cell's result (None for a dry run's pending cells) and what it computed."""

    out_dir: Path
    cells: dict[str, dict[str, Any] | None]
    computed: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> list[str]:
        return [name for name, result in self.cells.items() if result is None]


def default_out(config_path: Path) -> Path:
    """Where results go when neither the file nor --out says: runs/<config file stem> in the working directory."""
    return Path("runs") / Path(config_path).stem


@dataclass
class Plan:
    """What the checking half of a run found: inputs, the cells with their keys, and the finished ones."""

    config: ExperimentConfig
    out_dir: Path
    tasks: list[str]
    pool_path: Path
    pool_info: dict[str, Any]
    model_fingerprint: str
    cells: list[Cell]
    keys: dict[str, str]
    results: dict[str, dict[str, Any] | None]


def make_plan(config: ExperimentConfig, out_dir: Path, write: bool = True) -> Plan:
    """Validate what can fail cheaply (benchmark files, model, pool), draw the sub-pool, find finished cells."""
    tasks = check_eval(config)
    model_fp = fingerprint(resolve_model(config.model))
    pool_path, pool_info = prepare_pool(config, out_dir, write=write)
    cells = plan(config)
    keys: dict[str, str] = {}
    heldout_sha = pool_info.get("heldout", {}).get("sha256")
    for cell in sorted(cells, key=lambda c: matched_cell(config, c) is not None):  # sources first
        source = matched_cell(config, cell)
        matched_key = keys[source.name] if source else None
        keys[cell.name] = cell_key(config, cell, pool_info["sha256"], model_fp, matched_key, heldout_sha)
    results = {c.name: load_cell(out_dir / "cells" / c.name, keys[c.name]) for c in cells}
    return Plan(config, out_dir, tasks, pool_path, pool_info, model_fp, cells, keys, results)


def run_experiment(config: ExperimentConfig, out_dir: Path, dry_run: bool = False) -> ExperimentResult:
    """Run (or, with dry_run, only plan and validate) the experiment into `out_dir`."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    clock = time.perf_counter()
    if dry_run:
        found = make_plan(config, Path(out_dir), write=False)
        _announce(found)
        return ExperimentResult(found.out_dir, found.results)
    if not looks_like_hub_id(str(config.pool)) and not Path(config.pool).exists():  # before the folder is made
        raise ConfigError(f"pool: {config.pool}: no such file or folder")
    with folder_lock(Path(out_dir), "daar experiment"), torch_threads(config.threads):
        found = make_plan(config, Path(out_dir), write=True)
        _announce(found)
        return _run(found, started, clock)


def _run(p: Plan, started: str, clock: float) -> ExperimentResult:
    """Compute the missing cells, then rebuild every output from all the cells of the plan."""
    manifest: dict[str, Any] = {
        "status": "running",
        "config": p.config.result_dict(),
        "out": str(p.out_dir.resolve()),
        "pool": p.pool_info,
        "model_fingerprint": p.model_fingerprint,
        "versions": package_versions(),
        "machine": machine_info(),
        "started_at": started,
    }
    write_json(p.out_dir / MANIFEST, manifest)
    workers = p.config.parallel or auto_parallel(p.config.device)
    for index, cell in enumerate(p.cells, start=1):
        if p.results[cell.name] is not None:
            console.print(f"[{index}/{len(p.cells)}] {cell.name}: [dim]cached[/]")

    def report(index: int, cell: Cell, result: dict[str, Any]) -> None:
        console.print(f"[{index}/{len(p.cells)}] {cell.name}: {_summary(result)}")

    paths = {"pool_path": p.pool_path, "out_dir": p.out_dir, "cache_dir": Path(p.config.cache_dir or shared_cache())}
    heldout = p.out_dir / HELDOUT_FILE if p.config.heldout is not None else None
    if heldout is not None:
        paths["heldout"] = heldout
    if workers > 1:
        computed = run_cells(p.config, p.cells, p.results, p.keys, paths, workers, report)
    else:
        computed = []
        for index, cell in enumerate(p.cells, start=1):
            if p.results[cell.name] is not None:
                continue
            console.print(f"[{index}/{len(p.cells)}] {cell.name}: [bold]running[/]")
            folder = p.out_dir / "cells" / cell.name
            result = run_cell(p.config, cell, p.pool_path, folder, paths["cache_dir"], p.keys[cell.name], heldout)
            p.results[cell.name] = result
            computed.append(cell.name)
            report(index, cell, result)

    done = [r for r in p.results.values() if r is not None]
    write_tables(done, p.tasks, p.config.eval.mode, p.out_dir, _notes(p.config, p.pool_info))
    manifest |= {
        "status": "finished",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - clock, 3),
        "cells_computed": computed,
        "parallel": workers,
        "cells": {name: {"key": p.keys[name], "seconds": r.get("seconds")} for name, r in p.results.items() if r},
        "part_seconds": _part_totals(done),
        "outputs": ["results.csv", "results.md", "comparison.json", "results.png", "cells/"],
    }
    write_json(p.out_dir / MANIFEST, manifest)
    console.print(f"[green]done[/]: {len(computed)} cell(s) computed, {len(done) - len(computed)} cached; {p.out_dir}")
    return ExperimentResult(p.out_dir, p.results, computed, manifest)


def write_tables(cells: list[dict[str, Any]], tasks: list[str], mode: str, out_dir: Path, notes: list[str]) -> None:
    """results.csv, results.md, comparison.json and results.png from the cells' results.

    With held-out rows, the held-out NLL per group comes first and is the primary comparison."""
    metrics = headline_metrics(tasks, mode)
    rows = aggregate(cells, tasks)
    found = comparisons(cells, tasks)
    titles = {t: column_title(t) for t in [*tasks, AVERAGE]}
    ratios = sorted({c["ratio"] for c in cells if c.get("ratio") is not None})
    lower = mode == "nll"
    heldout = [compare_seeds(cells, heldout_values, r) for r in ratios]
    bench = [compare_seeds(cells, benchmark_values, r, lower_is_better=lower) for r in ratios]
    write_json(out_dir / "comparison.json", {"heldout": heldout, "benchmarks": bench, "bootstrap": found})
    write_text(out_dir / "results.csv", to_csv(cells, tasks))
    text = ""
    held_cells = [
        c | {"scores": c["heldout"]["groups"], "average": c["heldout"]["macro"]} for c in cells if c.get("heldout")
    ]
    if held_cells:
        groups = sorted(held_cells[0]["heldout"]["groups"])
        text += heldout_markdown(aggregate(held_cells, groups), groups)
        text += "".join(seeds_markdown(h, "Primary: held-out NLL (macro over groups)") for h in heldout)
    text += to_markdown(rows, tasks, metrics, mode, notes)
    text += "".join(seeds_markdown(b, "Benchmarks (secondary)", titles) for b in bench)
    text += comparison_markdown(found, tasks, mode, titles)
    write_text(out_dir / "results.md", text + mix_markdown(cells) + evidence_markdown(cells, tasks, titles))
    plot_results(rows, tasks, mode, out_dir / "results.png")


def check_eval(config: ExperimentConfig) -> list[str]:
    """Task names in order, after checking their benchmark files exist (an hour of selection is no help
    if scoring then fails on a missing file). Raises EvalError."""

    specs = parse_tasks(config.eval.tasks)
    bench = resolve_data_dir(config.eval.data_dir)
    missing = [str(bench / s.file) for s in specs if not (bench / s.file).is_file()]
    if missing:
        raise EvalError(f"benchmark files missing: {', '.join(missing)}")
    if config.eval.mode == "generate" and any(s.kind in ("mbpp", "humaneval") for s in specs):

        check_sandbox()
    return [s.name for s in specs]


def prepare_pool(config: ExperimentConfig, out_dir: Path, write: bool = True) -> tuple[Path, dict[str, Any]]:
    """The pool every cell selects from: the file (or `datasets` folder) itself, or `sample` rows
    drawn with the experiment seed and written once to out/pool.jsonl (kept while the source, size
    and seed are unchanged). A dataset loaded by id (or from a folder through datasets.load_dataset)
    is written there too, whole without a sample, so that every cell reads the same file."""

    fields = FieldMap.model_validate(config.select.get("fields", {}))
    source = open_pool(config.pool, config.split, config.subset)
    loaded = isinstance(source, DatasetPool)
    pool = read_pool(source, fields) if loaded or not Path(source).is_file() else None
    source_sha = pool.sha256 if pool is not None else file_sha256(Path(source))
    info: dict[str, Any] = {"source": str(config.pool), "source_sha256": source_sha, "sample": config.sample}
    info["seed"] = config.seed
    if loaded:
        info |= {"split": config.split, "subset": config.subset}
    if config.sample is None and not loaded:
        rows = len(pool if pool is not None else read_pool(source, fields))
        return Path(source), info | {"rows": rows, "sha256": source_sha}
    if config.heldout is not None:
        info["heldout"] = {"settings": config.heldout.model_dump(mode="json")}
    target, meta_path = out_dir / "pool.jsonl", out_dir / "pool.json"
    if target.is_file() and meta_path.is_file():
        meta = read_json(meta_path)
        same_heldout = meta.get("heldout", {}).get("settings") == info.get("heldout", {}).get("settings")
        if all(meta.get(k) == info[k] for k in ("source_sha256", "sample", "seed")) and same_heldout:
            return target, meta
    if pool is None:
        pool = read_pool(source, fields)
    size = len(pool) if config.sample is None else config.sample
    if size > len(pool):
        raise ConfigError(f"sample: {config.sample} rows asked, but {config.pool} has {len(pool)} usable rows")
    chosen = sorted(random.Random(config.seed).sample(range(len(pool)), size)) if config.sample else range(size)
    if not write:
        return target, info | {"rows": size, "source_rows": len(pool), "sha256": "(not drawn yet)"}
    write_jsonl(target, (pool.records[i].raw for i in chosen))
    info |= {"rows": size, "source_rows": len(pool), "sha256": file_sha256(target), "path": str(target)}
    if config.heldout is not None:
        outside = sorted(set(range(len(pool))) - set(chosen))
        rows = draw_heldout(pool, outside, config.heldout, config.pool)
        path = write_heldout(rows, out_dir)
        groups = {}
        for row in rows:
            groups[row["group"]] = groups.get(row["group"], 0) + 1
        info["heldout"] |= {"rows": len(rows), "groups": groups, "sha256": file_sha256(path), "path": str(path)}
    write_json(meta_path, info)
    return target, info


def _announce(p: Plan) -> None:
    config, pool = p.config, p.pool_info
    grid = f"{len(config.method_names)} method(s) x {len(config.ratios)} ratio(s) x {len(config.seeds)} seed(s)"
    todo = sum(1 for result in p.results.values() if result is None)
    sampled = f"sample of {pool.get('source_rows', '?')}, seed {config.seed}" if config.sample else "whole file"
    console.print(
        f"[bold]daar experiment[/]: {grid} + base model = {len(p.cells)} cells ({todo} to run); "
        f"pool {pool['rows']} rows ({sampled}); model {config.model}; eval {config.eval.mode}; out {p.out_dir}"
    )


def _summary(result: dict[str, Any]) -> str:
    s = result["seconds"]
    parts = []
    if "select" in s:
        parts.append(f"select {s['select']:.1f} s ({result['selection']['rows']} rows)")
    if "tune" in s:
        loss = result["tune"].get("final_loss")
        loss_text = "n/a" if loss is None else f"{loss:.3f}"
        parts.append(f"tune {s['tune']:.1f} s ({result['tune']['steps']} steps, loss {loss_text})")
    parts.append(f"eval {s['eval']:.1f} s")
    metric = "nll" if result["mode"] == "nll" else "score"
    return " · ".join(parts) + f" · average {metric} {result['average']:.4f}"


def _notes(config: ExperimentConfig, pool: dict[str, Any]) -> list[str]:
    sampled = f", a seeded sample (seed {config.seed}) of {pool.get('source_rows')}" if config.sample else ""
    limit = f"at most {config.eval.limit} items per task" if config.eval.limit else "the paper's subsample sizes"
    return [
        f"Model {config.model}; pool {Path(config.pool).name}: {pool['rows']} rows{sampled}.",
        f"Evaluation: {config.eval.mode} mode, {limit} (subsample seed {config.eval.items_seed}).",
    ]


def _part_totals(cells: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent per part over all cells (as recorded when each cell was computed)."""
    totals = {part: 0.0 for part in PARTS}
    for cell in cells:
        for part, value in cell.get("seconds", {}).items():
            totals[part] = round(totals.get(part, 0.0) + float(value), 3)
    totals["base_eval"] = sum(float(c["seconds"].get("eval", 0.0)) for c in cells if c["method"] == BASE)
    return totals
