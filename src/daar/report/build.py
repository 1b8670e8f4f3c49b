"""Turn loaded runs into plain values for the template: tables as lists, figures as PngFigure.

All the deciding (which section has data, which equation of counts holds, which labels a diversity
column uses) happens here in Python where it is testable; the template only lays values out. Every
string that reaches the template is left raw: the template escapes it (examples come from a model).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from daar.report.figures import PngFigure, histogram, map_figure, mix_figure, rounds_figure
from daar.report.load import RunData, finite


def unavailable(run: RunData, what: str) -> str:
    return f"{what}: not available for method {run.method}"


def settings_rows(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Config flattened to (dotted key, text) pairs; domains shown one line each."""
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key == "domains" and isinstance(value, list):
            for domain in value:
                if isinstance(domain, dict):
                    examples = len(domain.get("examples") or [])
                    extra = f" ({examples} example rows given)" if examples else ""
                    rows.append((f"domain {domain.get('name')}", f"{domain.get('description', '')}{extra}"))
        elif isinstance(value, dict):
            rows += settings_rows(value, f"{name}.")
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows


KEY_SETTINGS = {"method", "model", "ratio", "count", "strategy", "target", "sample", "seed", "clip_layer", "probe_size"}


def is_key_setting(name: str) -> bool:
    """Shown up front; everything else (field names, synthesis and head details) goes in a <details>."""
    return name in KEY_SETTINGS or name.startswith("domain ")


def count_equation(counts: dict[str, Any]) -> dict[str, Any] | None:
    """rows_in = selected + not_selected + rejected (+ sampled_out when sampling explains the rest)."""
    keys = ["selected", "not_selected", "rejected"]
    if "rows_in" not in counts or not all(k in counts for k in keys):
        return None
    total = sum(int(counts[k]) for k in keys)
    if total != int(counts["rows_in"]) and int(counts.get("sampled_out") or 0):
        keys.append("sampled_out")
        total += int(counts["sampled_out"])
    terms = " + ".join(f"{k} {int(counts[k]):,}" for k in keys)
    return {"text": f"rows_in {int(counts['rows_in']):,} = {terms}", "ok": total == int(counts["rows_in"])}


def stage_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    stages = manifest.get("stages") or {}
    return [
        {"name": name, "seconds": finite((info or {}).get("seconds")), "cached": bool((info or {}).get("cached"))}
        for name, info in stages.items()
    ]


def pseudo_domains(run: RunData) -> dict[str, Any] | None:
    """Probe-set k-means sizes (manifest) and the probe's argmax over the scored rows (scores)."""
    probe = run.manifest.get("probe") or {}
    sizes = probe.get("pseudo_domain_sizes") or {}
    column = run.column("pseudo_domain")
    if not sizes and column is None:
        return None
    names = list(sizes)
    scored: dict[str, int] = {}
    kept: dict[str, int] = {}
    if column is not None:
        values = column.astype(str)
        selected = run.column("selected")
        for name in values.unique().tolist():
            if name not in names:
                names.append(name)
        scored = values.value_counts().to_dict()
        if selected is not None:
            kept = values[selected.astype(bool)].value_counts().to_dict()
    rows = [{"name": n, "probe_set": sizes.get(n), "scored": scored.get(n), "selected": kept.get(n)} for n in names]
    return {"rows": rows, "has_scored": column is not None}


def probe_metrics(run: RunData) -> list[tuple[str, str]] | None:
    probe = run.manifest.get("probe") or {}
    reward = run.manifest.get("reward") or {}
    if not probe and not reward:
        return None
    rows: list[tuple[str, str]] = []
    for label, key, source in [
        ("probe validation accuracy", "val_accuracy", probe),
        ("probe train rows", "train_rows", probe),
        ("probe validation rows", "val_rows", probe),
        ("reward model validation MSE", "val_mse", reward),
        ("reward model validation MAE", "val_mae", reward),
        ("reward model train rows", "train_rows", reward),
        ("reward model validation rows", "val_rows", reward),
        ("maximum entropy (log K)", "entropy_max", reward),
    ]:
        if key in source:
            rows.append((label, fmt(source[key])))
    return rows


def histogram_figures(run: RunData, prefix: str) -> tuple[list[PngFigure], list[str]]:
    """Entropy and predicted reward (DaaR); for other methods, the method's own score instead."""
    selected = run.column("selected")
    sel = None if selected is None else selected.astype(bool).to_numpy()
    figures, missing = [], []
    for column, title, xlabel in [
        ("entropy", "Diversity reward H of the probe rows", "entropy of the domain probe (nats)"),
        ("reward", "Predicted reward of every scored row", "predicted entropy (reward model)"),
    ]:
        values = run.column(column)
        if values is None or not np.isfinite(values.to_numpy(dtype=np.float64)).any():
            missing.append(column)
            continue
        figures.append(histogram(f"{prefix}{column}_hist", f"{title} ({run.label})", xlabel, values.to_numpy(), sel))
    score = run.column("score")
    own_score = run.column("reward") is None and score is not None
    if own_score:
        title = f"Score of method {run.method} ({run.label})"
        figures.append(histogram(f"{prefix}score_hist", title, "score (higher = kept first)", score.to_numpy(), sel))
    notes = []
    if missing:
        what = "histograms of " + " and ".join("predicted reward" if c == "reward" else c for c in missing)
        notes.append(unavailable(run, what) + ("; the method's own score is shown instead" if own_score else ""))
    return figures, notes


def map_section(run: RunData, prefix: str) -> PngFigure | None:
    if not run.map:
        return None
    method = run.map.get("method", "map")
    title = f"{method} of e(x), {len(run.map['points'])} rows ({run.label})"
    return map_figure(f"{prefix}map", title, run.map)


def mix_sections(run: RunData, prefix: str) -> list[dict[str, Any]]:
    """One block per labelling: the run's own labels (pseudo-domains) and ground truth when present."""
    blocks = []
    analysis = run.analysis or {}
    truth = analysis.get("ground_truth") or {}
    own = analysis.get("labels") if analysis.get("mix") else None
    sources = []
    if own is not None and not (truth and own == truth.get("labels")):  # else it is the ground-truth copy
        sources.append((str(own), analysis["mix"], analysis.get("kept") or {}))
    if truth.get("mix"):
        sources.append((f"ground truth: {truth.get('labels', 'domain')}", truth["mix"], truth.get("kept") or {}))
    elif isinstance(run.manifest.get("ground_truth"), dict) and run.manifest["ground_truth"].get("field") != own:
        gt = run.manifest["ground_truth"]  # no analysis (no features for the pool): the manifest's mix
        mix = {k: gt[k] for k in ("pool", "selected") if isinstance(gt.get(k), dict)}
        if mix:
            sources.append((f"ground truth: {gt.get('field', 'domain')}", mix, {}))
    for i, (labels, mix, kept) in enumerate(sources):
        title = f"Domain mix by {labels} ({run.label})"
        figure = mix_figure(f"{prefix}mix_{i}", title, mix)
        blocks.append({"labels": labels, "figure": figure, "rows": _mix_rows(mix, kept), "mix": mix})
    return blocks


def rounds_section(run: RunData, prefix: str) -> dict[str, Any] | None:
    """A co-evolution run's rounds (manifest `rounds`, as in rounds.csv): the table, benchmark
    scores over rounds and the pseudo-domain mix of the selection so far."""
    rows = run.manifest.get("rounds")
    if not isinstance(rows, list) or not rows:
        return None
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    scores = [c for c in columns if c.startswith("score_") and c != "score_average"]
    picked = [row for row in rows if int(row["round"]) > 0]
    nll = (run.config.get("eval") or {}).get("mode") == "nll"
    score_label = "NLL per token (lower is better)" if nll else "score (higher is better)"
    plots = [  # (file, title, rows, columns, y label, stacked)
        ("round_scores", "Benchmarks by round", rows, scores, score_label, False),
        (
            "round_mix",
            "Selection mix by pseudo-domain",
            picked,
            [c for c in columns if c.startswith("mix_")],
            "share of the selection so far",
            True,
        ),
    ]
    figures = [
        rounds_figure(
            f"{prefix}{name}",
            f"{title} ({run.label})",
            [int(r["round"]) for r in chosen],
            {c.split("_", 1)[1]: [r.get(c) for r in chosen] for c in cols},
            ylabel,
            stacked,
        )
        for name, title, chosen, cols, ylabel, stacked in plots
        if chosen and cols
    ]
    return {
        "columns": list(columns),
        "rows": [[fmt(row.get(c)) for c in columns] for row in rows],
        "figures": figures,
    }


def analysis_note(run: RunData) -> str | None:
    """Why a run has no diversity analysis (no analysis.json, or the pipeline's own reason)."""
    if run.analysis is None:
        return unavailable(run, "diversity analysis (no analysis.json)")
    if run.analysis.get("available") is False:
        return f"diversity analysis: not available for method {run.method} ({run.analysis.get('reason', 'no reason')})"
    return None


def _mix_rows(mix: dict[str, Any], kept: dict[str, Any]) -> list[dict[str, Any]]:
    pool, sel = mix.get("pool") or {}, mix.get("selected") or {}
    names = list((pool.get("counts") or {}) | (sel.get("counts") or {}))
    rows = []
    for name in names:
        k = kept.get(name) or {}
        rows.append(
            {
                "name": name,
                "pool": (pool.get("counts") or {}).get(name),
                "selected": (sel.get("counts") or {}).get(name),
                "fraction": finite((sel.get("fractions") or {}).get(name)),
                "kept": finite(k.get("fraction")),
            }
        )
    return rows


def comparison_rows(runs: list[RunData]) -> list[dict[str, Any]]:
    """Diversity of each run's selection side by side; overlap is measured against the first run."""
    base_ids = runs[0].selected_ids() if runs else None
    base_scored = runs[0].scored_ids() if runs else None
    rows = []
    for run in runs:
        analysis = run.analysis or {}
        truth = analysis.get("ground_truth") or _manifest_truth(run.manifest)
        ids = run.selected_ids()
        overlap = jaccard = None
        if ids and base_ids is not None:
            overlap, jaccard = selection_overlap(set(ids), run.scored_ids(), set(base_ids), base_scored)
        rows.append(
            {
                "label": run.label,
                "method": run.method,
                "rows_in": run.counts.get("rows_in"),
                "scored": run.counts.get("scored"),
                "selected": run.counts.get("selected", len(ids) if ids is not None else None),
                "own": _diversity(analysis),
                "truth": _diversity(truth) if truth else None,
                "overlap": overlap,
                "jaccard": jaccard,
                "seconds": sum(r["seconds"] or 0.0 for r in stage_rows(run.manifest)) or None,
            }
        )
    return rows


def selection_overlap(
    mine: set[str], my_scored: set[str] | None, base: set[str], base_scored: set[str] | None
) -> tuple[float | None, float | None]:
    """|A ∩ B| / |A| and Jaccard over the rows both runs scored (runs on different samples are
    compared on their common rows); (None, None) when A has no selected row among them."""
    if my_scored is not None and base_scored is not None:
        both = my_scored & base_scored
        mine, base = mine & both, base & both
    if not mine:
        return None, None
    common = len(mine & base)
    return common / len(mine), common / len(mine | base)


def _manifest_truth(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ground-truth mix in analysis.json's shape (no diversity: that needs features)."""
    gt = manifest.get("ground_truth")
    if not isinstance(gt, dict) or not isinstance(gt.get("selected"), dict):
        return {}
    return {"labels": gt.get("field"), "mix": {k: gt[k] for k in ("pool", "selected") if isinstance(gt.get(k), dict)}}


def _diversity(block: dict[str, Any]) -> dict[str, Any]:
    selected = block.get("selected") or {}
    mix = (block.get("mix") or {}).get("selected") or {}
    return {
        "labels": block.get("labels"),
        "inter": finite(selected.get("inter_diversity")),
        "intra": finite(selected.get("intra_diversity")),
        "entropy": finite(mix.get("entropy")),
        "normalized_entropy": finite(mix.get("normalized_entropy")),
    }


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for people: ints with separators, floats with `digits` decimals, missing as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    number = finite(value)
    if number is None:
        return "-" if isinstance(value, float) else str(value)
    return f"{number:.{digits}f}"
