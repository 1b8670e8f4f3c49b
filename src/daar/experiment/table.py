"""The results table, rebuilt from the cells' JSON files every time (never kept as state of its own).

Rows are aggregated over seeds per method x ratio (mean and sample standard deviation); the base
model comes first, as in the paper's tables. `results.csv` keeps one row per cell so any other
aggregation can be made from it; `results.md` is the paper-like summary.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from statistics import fmean, stdev
from typing import Any

AVERAGE = "average"
PARTS = ("select", "tune", "eval", "heldout")
METRIC_TEXT = {
    "nll": "mean negative log-likelihood per token of the reference answer",
    "exact_match": "exact match",
    "pass_at_1": "pass@1",
    "acc": "accuracy",
    "acc_norm": "length-normalised accuracy",
}


@dataclass
class Row:
    """One line of the summary: the cells of a method at a ratio, aggregated over their seeds."""

    method: str
    ratio: float | None
    seeds: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "base model" if self.ratio is None else self.method

    def mean(self, column: str) -> float | None:
        found = self.values.get(column, [])
        return fmean(found) if found else None

    def std(self, column: str) -> float | None:
        """Sample standard deviation over seeds; None with a single seed (no spread to report)."""
        found = self.values.get(column, [])
        return stdev(found) if len(found) > 1 else None

    def mean_seconds(self, part: str) -> float | None:
        found = self.seconds.get(part, [])
        return fmean(found) if found else None


def aggregate(cells: list[dict[str, Any]], tasks: list[str]) -> list[Row]:
    """Group cell results by (method, ratio) in the order first seen, the base model first."""
    rows: dict[tuple[str, float | None], Row] = {}
    ordered = sorted(cells, key=lambda c: c.get("ratio") is not None)  # stable: base first, rest as given
    for cell in ordered:
        method = cell["method"] + (f" (draw {cell['draw']})" if cell.get("draw", 1) > 1 else "")
        key = (method, cell.get("ratio"))
        row = rows.setdefault(key, Row(method, cell.get("ratio")))
        if cell.get("seed") is not None:
            row.seeds.append(int(cell["seed"]))
        for task in tasks:
            if task in cell["scores"]:
                row.values.setdefault(task, []).append(float(cell["scores"][task]))
        row.values.setdefault(AVERAGE, []).append(float(cell["average"]))
        for part, value in cell.get("seconds", {}).items():
            row.seconds.setdefault(part, []).append(float(value))
    return list(rows.values())


def to_csv(cells: list[dict[str, Any]], tasks: list[str]) -> str:
    """One row per cell: method, ratio, seed, each benchmark's headline metric, the average, seconds per part."""
    columns = ["method", "ratio", "seed", "draw", "selected_rows", "train_tokens", "heldout_macro", *tasks, AVERAGE]
    columns += [f"{p}_seconds" for p in PARTS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for cell in _method_major(cells):
        row: dict[str, Any] = {
            "method": cell["method"],
            "ratio": "" if cell.get("ratio") is None else cell["ratio"],
            "seed": "" if cell.get("seed") is None else cell["seed"],
            "draw": "" if cell.get("seed") is None else cell.get("draw", 1),
            "heldout_macro": _number(cell["heldout"]["macro"]) if cell.get("heldout") else "",
            "selected_rows": cell.get("selection", {}).get("rows", ""),
            "train_tokens": cell.get("tune", {}).get("tokens") or "",
            AVERAGE: _number(cell["average"]),
        }
        row |= {task: _number(cell["scores"].get(task)) for task in tasks}
        row |= {f"{p}_seconds": _number(cell.get("seconds", {}).get(p)) for p in PARTS}
        writer.writerow(row)
    return buffer.getvalue()


def _method_major(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The base model first, then each method's cells by ratio and seed, methods in first-seen order."""
    first = {m: i for i, m in enumerate(dict.fromkeys(c["method"] for c in cells))}
    return sorted(
        cells,
        key=lambda c: (
            c.get("ratio") is not None, first[c["method"]], c.get("ratio") or 0, c.get("seed") or 0, c.get("draw", 1)
        ),
    )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def to_markdown(rows: list[Row], tasks: list[str], metrics: dict[str, str], mode: str, notes: list[str]) -> str:
    """The paper-like table (mean ± std over seeds, best mean per column in bold) and a timing table."""
    lower_better = mode == "nll"
    scale, unit = (1.0, "") if lower_better else (100.0, " (%)")
    columns = [*tasks, AVERAGE]
    best = {c: _best([r.mean(c) for r in rows], lower_better) for c in columns}

    lines = ["# daar experiment results", ""]
    direction = "Lower" if lower_better else "Higher"
    lines.append(f"Metric{unit}: {_metric_sentence(tasks, metrics)}. {direction} is better.")
    lines.append("Cells: mean ± sample standard deviation over seeds; the base model is evaluated once. Bold: best.")
    lines += notes
    lines += ["", "| Model | Ratio | Seeds | " + " | ".join(column_title(c) for c in columns) + " |"]
    lines.append("|---|---:|---:|" + "---:|" * len(columns))
    for row in rows:
        cells = []
        for column in columns:
            mean, std = row.mean(column), row.std(column)
            text = "–" if mean is None else f"{mean * scale:.{_digits(lower_better)}f}"
            if std is not None:
                text += f" ± {std * scale:.{_digits(lower_better)}f}"
            cells.append(f"**{text}**" if mean is not None and mean == best[column] else text)
        ratio = "–" if row.ratio is None else f"{row.ratio:g}"
        seeds = "–" if row.ratio is None else ", ".join(map(str, row.seeds))
        lines.append(f"| {row.label} | {ratio} | {seeds} | " + " | ".join(cells) + " |")

    lines += ["", "## Time per part (seconds, mean per cell)", ""]
    shown = [p for p in PARTS if any(row.seconds.get(p) for row in rows)] or list(PARTS[:3])
    lines += ["| Model | Ratio | " + " | ".join(shown) + " | total |", "|---|---:|" + "---:|" * (len(shown) + 1)]
    for row in rows:
        parts = [row.mean_seconds(p) for p in shown]
        total = sum(p for p in parts if p is not None)
        ratio = "–" if row.ratio is None else f"{row.ratio:g}"
        texts = ["–" if p is None else f"{p:.1f}" for p in parts]
        lines.append(f"| {row.label} | {ratio} | " + " | ".join(texts) + f" | {total:.1f} |")
    return "\n".join(lines) + "\n"


def heldout_markdown(rows: list[Row], groups: list[str]) -> str:
    """Held-out NLL per group and its macro average, mean ± std over seeds (the base model once)."""
    columns = [*groups, AVERAGE]
    lines = ["# Held-out NLL per response token, by group (primary)", ""]
    lines.append("Rows of the pool outside the sample, never selectable; macro: the mean over groups. Lower is better.")
    lines += ["", "| Model | Ratio | Seeds | " + " | ".join(c if c != AVERAGE else "macro" for c in columns) + " |"]
    lines.append("|---|---:|---:|" + "---:|" * len(columns))
    for row in rows:
        shown = []
        for column in columns:
            mean, std = row.mean(column), row.std(column)
            text = "–" if mean is None else f"{mean:.4f}"
            shown.append(text + (f" ± {std:.4f}" if std is not None else ""))
        ratio = "–" if row.ratio is None else f"{row.ratio:g}"
        seeds = "–" if row.ratio is None else str(len(row.seeds))
        lines.append(f"| {row.label} | {ratio} | {seeds} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n\n"


def mix_markdown(cells: list[dict[str, Any]]) -> str:
    """Share of each true domain in the selections (mean over seeds) and their balance, or "" without labels.

    Balance is the entropy of the mix divided by log K: 1 means every domain equally represented.
    """
    mixes: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for cell in cells:
        mix = cell.get("selection", {}).get("domain_mix")
        if mix:
            mixes.setdefault((cell["method"], cell["ratio"]), []).append(mix)
    if not mixes:
        return ""
    domains = sorted({d for group in mixes.values() for mix in group for d in mix["fractions"]})
    lines = ["", "## Domain mix of the selections (% of selected rows, mean over seeds)", ""]
    lines.append("| Method | Ratio | " + " | ".join(domains) + " | balance |")
    lines.append("|---|---:|" + "---:|" * (len(domains) + 1))
    for (method, ratio), group in mixes.items():
        shares = [fmean(m["fractions"].get(d, 0.0) for m in group) * 100 for d in domains]
        balance = [m["normalized_entropy"] for m in group if m.get("normalized_entropy") is not None]
        shown = f"{fmean(balance):.3f}" if balance else "–"
        lines.append(f"| {method} | {ratio:g} | " + " | ".join(f"{v:.1f}" for v in shares) + f" | {shown} |")
    return "\n".join(lines) + "\n"


def _metric_sentence(tasks: list[str], metrics: dict[str, str]) -> str:
    names = {metrics[t] for t in tasks}
    if len(names) == 1:
        return METRIC_TEXT.get(next(iter(names)), next(iter(names)))
    return "; ".join(f"{t}: {METRIC_TEXT.get(metrics[t], metrics[t])}" for t in tasks)


def _best(values: list[float | None], lower_better: bool) -> float | None:
    found = [v for v in values if v is not None and math.isfinite(v)]
    if len(found) < 2:
        return None  # nothing to compare against
    return min(found) if lower_better else max(found)


def _digits(lower_better: bool) -> int:
    # NLL differences between selections at CPU scale are often in the third decimal
    return 4 if lower_better else 1


def column_title(column: str) -> str:
    return {
        AVERAGE: "Average",
        "nq": "NQ",
        "triviaqa": "TriviaQA",
        "hellaswag": "HellaSwag",
        "gsm8k": "GSM8K",
        "math": "MATH",
        "mbpp": "MBPP",
        "humaneval": "HumanEval",
        "mmlu": "MMLU",
    }.get(column, column)
