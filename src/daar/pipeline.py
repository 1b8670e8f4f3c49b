"""One selection run: pool file in, RUN_DIR out (docs/METHOD.md, steps 1-8 for DaaR, or any baseline).

RUN_DIR holds selected.jsonl (original rows, unchanged), rejected.jsonl, scores.parquet, examples/,
fitted/, analysis.json, map.json, report.html and manifest.json. The manifest is written last, so
its presence means the run finished. Expensive stages are cached in the shared user cache (or
--cache-dir), keyed by their inputs, so a rerun with another ratio, seed or output folder reads
what an earlier run computed.

Every input row ends in exactly one of: selected, not selected (scored below the cut, or left
out by --sample), rejected (with a reason). The counts in the manifest are read back from the
files written (daar.write.account), which also checks that they cover every input row once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daar.analyze.diversity import domain_mix, encode_labels, kept_per_domain, summarize
from daar.analyze.fields import field_values, kept_by_value
from daar.analyze.maps import embed_2d
from daar.config import SelectConfig
from daar.read import Pool, check_pool, read_pool
from daar.report import write_report_safely
from daar.select.base import FITTED_SETTINGS, Context, Scores, Selector, choose, make_selector, target_count
from daar.select.budget import budget_of, rows_within
from daar.select.checks import selection_warnings
from daar.tune.tokens import TokenCounter
from daar.utils.cache import atomic_path, shared_cache, write_json
from daar.write.run import RunResult, RunWriter, ranked

MISSING_LABEL = "(missing)"


def run_select(
    config: SelectConfig,
    pool_path: Any,
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    show_domain_field: str | None = None,
    report: bool = True,
    split: str | None = None,
    subset: str | None = None,
    output_format: str = "jsonl",
    show_fields: Sequence[str] = (),
) -> RunResult:
    """Read, fit, score, select and write one run; see the module docstring for what lands where.

    `pool_path`: a data file, a `datasets` folder, a hub dataset id (with `split` and `subset`) or
    a `datasets.Dataset` (daar.read.hub). `output_format` "parquet" or "hf" also writes the
    selection as selected.parquet or selected/ (daar.write.formats). `report=False` also skips the
    2-D map, which only the report shows (an experiment's cells save its seconds). `show_fields`:
    row fields whose values' shares kept go to the manifest (display only, daar.analyze.fields)."""
    out_dir = Path(out_dir)
    cache = Path(cache_dir or config.cache_dir or shared_cache())
    source = check_pool(pool_path, split, subset)  # before the output folder is made
    with RunWriter(out_dir, "select", config.method, output_format) as run:  # cache entries lock themselves
        ctx = Context(config, cache)
        timer = ctx.timer
        selector = make_selector(config.method)

        with timer.stage("read"):
            full = read_pool(source, config.fields)
        pool, sampled_out = sample_pool(full, config.sample, config.seed)
        selector.fit(pool, ctx)
        with timer.stage("score"):
            scores = selector.score(pool, ctx)
        with timer.stage("select"):
            mask = np.zeros(len(pool), dtype=bool)
            chosen, budget = _cut(selector, pool, ctx, scores)
            mask[chosen] = True

        artifacts = selector.artifacts()
        with timer.stage("write"):  # the earlier run's outputs go only now: a failure above left them whole
            run.write_rows(
                (pool.records[i].raw for i in np.flatnonzero(mask)),
                ({"position": r.position, "id": r.id, "reason": r.reason} for r in full.rejected),
                _scores_frame(pool, scores, mask, full.subset(sampled_out)),
                full.rows_in,
                config.fields.id,
                schema=full.schema,
                fields=config.fields,
            )
            if selector.save(out_dir / "fitted"):  # with its settings, for `daar score --fitted`
                write_json(out_dir / "fitted" / FITTED_SETTINGS, config.model_dump(mode="json"))
            if artifacts.example_files is not None:  # the bytes the fit read: a clean-up cannot take them
                _write_examples(artifacts.example_files, out_dir / "examples")

        truth = truth_labels(pool, show_domain_field)
        chars = np.array([len(t) for t in pool.texts], dtype=np.float64)
        warnings = selection_warnings(scores, mask, chars, config.strategy, config.shares)
        with timer.stage("analysis"):
            _write_analysis(out_dir, ctx, pool, scores, mask, truth, show_domain_field, with_map=report)
        manifest = run.header(config.result_dict(), full.source, [d.name for d in config.domains])
        manifest |= artifacts.manifest
        if truth is not None:
            manifest["ground_truth"] = ground_truth(truth, mask, show_domain_field)
        if show_fields:
            raws = [r.raw for r in pool.records]
            manifest["shown_fields"] = {f: kept_by_value(field_values(raws, f), mask) for f in show_fields}
        if budget:
            manifest["token_budget"] = budget
        manifest["warnings"] = warnings
        if report:
            with timer.stage("report"):
                write_report_safely(out_dir, {**manifest, "stages": timer.summary()})
        manifest = run.finish({**manifest, "stages": timer.summary()})
    chosen_rows = [pool.records[i] for i in np.flatnonzero(mask)]
    return RunResult(out_dir, manifest, [r.id for r in chosen_rows], [r.position for r in chosen_rows])


def _cut(selector: Selector, pool: Pool, ctx: Context, scores: Scores) -> tuple[np.ndarray, dict[str, Any]]:
    """The selected rows: `ratio`/`count` rows, or as many as fit a token budget (daar.select.budget),
    whose figures come back for the manifest (empty for a budget in rows). With a budget, each row's
    training tokens join the scores."""
    config = ctx.config
    if config.budget_tokens is None and config.match_tokens is None:
        return choose(selector, pool, ctx, target_count(len(pool), config.ratio, config.count), scores), {}
    counter = TokenCounter(ctx.model_dir, config.trust_remote_code, ctx.cache_dir)
    budget = budget_of(config, counter)
    assert budget is not None
    tokens = counter.pool(pool, ctx.model_fingerprint)
    chosen = rows_within(budget, tokens, lambda n: choose(selector, pool, ctx, n, scores), len(pool))
    scores["tokens"] = tokens
    found = {"budget": budget, "selected_tokens": int(tokens[chosen].sum()), "rows": len(chosen)}
    if config.match_tokens is not None:
        found["match_tokens"] = str(Path(config.match_tokens).resolve())
    return chosen, found


def sample_pool(pool: Pool, sample: int | None, seed: int) -> tuple[Pool, list[int]]:
    """A seeded sample of the usable rows; the rest count as not selected (never silently dropped)."""
    if sample is None or sample >= len(pool):
        return pool, []
    keep = np.sort(np.random.default_rng(seed).choice(len(pool), size=sample, replace=False))
    left = np.setdiff1d(np.arange(len(pool)), keep)
    return pool.subset(keep.tolist()), left.tolist()


def _scores_frame(pool: Pool, scores: Scores, mask: np.ndarray, outside: Pool) -> pd.DataFrame:
    """One row per usable input row: the scored ones with their rank, then the rows outside the
    --sample (in_sample False, no score), so the file accounts for every usable row."""
    frame = pd.DataFrame({"position": [r.position for r in pool.records], "id": pool.ids})
    frame["score"] = np.asarray(scores["score"], dtype=np.float64)
    for name, values in scores.items():
        if name != "score":
            frame[name] = values
    frame = ranked(frame, mask)
    if len(outside):
        rest = pd.DataFrame({"position": [r.position for r in outside.records], "id": outside.ids})
        rest["rank"] = pd.array([None] * len(rest), dtype="Int64")
        rest["selected"] = False
        rest["in_sample"] = False
        frame = pd.concat([frame, rest], ignore_index=True)
    return frame


def _write_examples(files: dict[str, bytes], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(files.items()):
        with atomic_path(target / name) as tmp:
            tmp.write_bytes(data)


def truth_labels(pool: Pool, field: str | None) -> list[str] | None:
    """Ground-truth labels for display only; selectors never see them."""
    if not field:
        return None
    return [str(r.raw.get(field)) if r.raw.get(field) not in (None, "") else MISSING_LABEL for r in pool.records]


def _write_analysis(
    out_dir: Path,
    ctx: Context,
    pool: Pool,
    scores: Scores,
    mask: np.ndarray,
    truth: list[str] | None,
    field: str | None,
    with_map: bool = True,
) -> None:
    """Diversity measures and a 2-D map on e(x), when this run's prober features exist.

    Baselines that never read the model (random, lengths) get no analysis of their own unless a
    shared cache already holds the features: computing them only for a figure would cost more
    than the selection itself.
    """
    feats = ctx.cached_features(pool.texts)
    if feats is None:
        write_json(out_dir / "analysis.json", {"available": False, "reason": "no prober features for this pool"})
        return
    sections: dict[str, Any] = {"available": True}
    label_sets: list[tuple[str, list[str]]] = []
    if "pseudo_domain" in scores:
        label_sets.append(("pseudo_domain", [str(v) for v in scores["pseudo_domain"]]))
    if truth is not None:
        label_sets.append((field or "truth", truth))
    for source, values in label_sets:
        labels, names = encode_labels(values)
        sections["ground_truth" if source != "pseudo_domain" else "pseudo_domain"] = {
            "labels": source,
            "names": names,
            "pool": summarize(feats.emb, labels, names),
            "selected": summarize(feats.emb[mask], labels[mask], names),
            "mix": {"pool": domain_mix(labels, names), "selected": domain_mix(labels[mask], names)},
            "kept": kept_per_domain(labels, mask, names),
        }
    if label_sets:
        first = next(iter(k for k in ("pseudo_domain", "ground_truth") if k in sections))
        sections.update({k: sections[first][k] for k in ("labels", "names", "pool", "selected", "mix", "kept")})
    write_json(out_dir / "analysis.json", sections)
    if not with_map:
        return
    with ctx.timer.stage("map"):
        result = embed_2d(feats.emb, seed=ctx.config.seed, max_points=2000, selected=mask)
        source, values = label_sets[-1] if label_sets else ("none", None)
        labels, names = encode_labels(values) if values else (None, None)
        write_json(out_dir / "map.json", {**result.to_json(labels, names, mask), "labels": source})


def ground_truth(truth: list[str], mask: np.ndarray, field: str | None) -> dict[str, Any]:
    """The manifest's true-domain mix of the pool and of the selection (display only)."""
    labels, names = encode_labels(truth)
    return {"field": field, "pool": domain_mix(labels, names), "selected": domain_mix(labels[mask], names)}
