"""Rebuild every table of docs/EVIDENCE.md from the committed study files.

    python benchmarks/evidence_tables.py                    # all sections (the calibration takes minutes)
    python benchmarks/evidence_tables.py --skip-calibration

First study (docs/experiment_evidence_cpu/, summaries only): the decomposition of its primary
measure into MMLU and the other seven benchmarks, and its per-seed table with t intervals
(per_seed.md). Second study (docs/experiment_evidence2_cpu/, every cell's selected ids and per-item
NLLs, packed by daar.experiment.archive): results.md / results.csv / comparison.json / results.png
as `daar experiment` writes them, and selection.md (each arm's share kept of every source and
domain). The calibration table of section 7.1 comes from benchmarks/calibration.py. Everything
is printed as markdown too.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path
from statistics import fmean, stdev

from daar.evaluate.registry import parse_tasks
from daar.experiment import archive
from daar.experiment.paired import heldout_values
from daar.experiment.runner import write_tables
from daar.experiment.stats import corrected, minimum_detectable, t_interval
from daar.utils.cache import read_json, write_text

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIRST, SECOND = DOCS / "experiment_evidence_cpu", DOCS / "experiment_evidence2_cpu"
TASKS = ["nq", "triviaqa", "hellaswag", "gsm8k", "math", "mbpp", "humaneval", "mmlu"]


def first_study() -> str:
    rows = list(csv.DictReader((FIRST / "results.csv").open(encoding="utf-8")))
    random = {r["seed"]: r for r in rows if r["method"] == "random"}
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m not in ("base", "random")]
    lines = ["## First study: where the primary measure's differences came from", ""]
    lines += ["| method | from MMLU | from the other 7 benchmarks | total |", "|---|--:|--:|--:|"]
    per_seed: dict[str, dict[str, list[float]]] = {}
    for method in methods:
        cells = [r for r in rows if r["method"] == method]
        diffs = {t: [float(c[t]) - float(random[c["seed"]][t]) for c in cells] for t in TASKS}
        mmlu = fmean(diffs["mmlu"]) / len(TASKS)
        others = sum(fmean(diffs[t]) for t in TASKS if t != "mmlu") / len(TASKS)
        lines.append(f"| {method} | {mmlu:+.4f} | {others:+.4f} | {mmlu + others:+.4f} |")
        per_seed[method] = {
            "8 benchmarks": [fmean(float(c[t]) - float(random[c["seed"]][t]) for t in TASKS) for c in cells],
            "7 without MMLU": [
                fmean(float(c[t]) - float(random[c["seed"]][t]) for t in TASKS if t != "mmlu") for c in cells
            ],
        }
    seeds = sorted(random, key=int)
    lines += ["", "## First study, per seed: method minus random, 8-benchmark average NLL (section 2)", ""]
    lines += ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | 95% t interval over seeds |"]
    lines.append("|---|" + "--:|" * (len(seeds) + 2))
    lines.append("| random | " + " | ".join(f"{float(random[s]['average']):.4f}" for s in seeds) + " | "
                 + f"{fmean(float(random[s]['average']) for s in seeds):.4f} | – |")
    for method in methods:
        values = per_seed[method]["8 benchmarks"]
        found = t_interval(values)
        lines.append(f"| {method} | " + " | ".join(f"{v:+.4f}" for v in values)
                     + f" | {found.difference:+.4f} | [{found.low:+.4f}, {found.high:+.4f}] |")
    lines += ["", "## First study re-read with the t interval over its 3 seeds, Holm over its 5 methods", ""]
    lines += ["| method | average | per seed | difference | Holm interval (level) | R |", "|---|---|---|--:|---|:-:|"]
    for average in ("8 benchmarks", "7 without MMLU"):
        family = corrected({m: per_seed[m][average] for m in methods})
        for method in methods:
            found = family[method]
            c = found["corrected"]
            seeds = ", ".join(f"{v:+.4f}" for v in per_seed[method][average])
            lines.append(
                f"| {method} | {average} | {seeds} | {c.difference:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] "
                f"({c.level * 100:.1f}%) | {'R' if found['resolved'] else ''} |"
            )
    text = "\n".join(lines) + "\n"
    write_text(FIRST / "per_seed.md", text)
    return text


def selection_table(cells: list[dict], fields: dict[str, dict], field: str) -> str:
    """Each arm's share kept of every value of `field` (mean over its cells, min-max)."""
    counts: dict[str, int] = {}
    for row in fields.values():
        counts[str(row[field])] = counts.get(str(row[field]), 0) + 1
    values = sorted(counts)
    arms: dict[str, list[dict[str, float]]] = {}
    for cell in cells:
        if not cell.get("selection"):
            continue
        name = cell["method"] + (f" (draw {cell['draw']})" if cell.get("draw", 1) > 1 else "")
        kept: dict[str, int] = {}
        for row_id in cell["selection"]["ids"]:
            value = str(fields[row_id][field])
            kept[value] = kept.get(value, 0) + 1
        arms.setdefault(name, []).append({v: kept.get(v, 0) / counts[v] for v in values})
    total = sum(counts.values())
    lines = [f"### Share kept of each `{field}` (% of its rows in the {total}-row sample; mean over seeds, min-max)"]
    lines += ["", "| arm | " + " | ".join(f"{v} ({counts[v]})" for v in values) + " |"]
    lines.append("|---|" + "---:|" * len(values))
    for name, shares in arms.items():
        shown = []
        for v in values:
            found = [s[v] * 100 for s in shares]
            shown.append(f"{fmean(found):.0f} ({min(found):.0f}-{max(found):.0f})")
        lines.append(f"| {name} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def second_study() -> str:
    if not (SECOND / archive.CELLS).is_dir():
        return "(the second study's cells are not packed yet)\n"
    cells = archive.load(SECOND)
    experiment = read_json(SECOND / "experiment.json")
    tasks = [s.name for s in parse_tasks(experiment["config"]["eval"]["tasks"])]
    notes = [f"Rebuilt from {SECOND.relative_to(DOCS.parent)} by benchmarks/evidence_tables.py."]
    write_tables(cells, tasks, "nll", SECOND, notes)
    fields = archive.sample_fields(SECOND)
    text = selection_table(cells, fields, "source") + "\n" + selection_table(cells, fields, "domain")
    write_text(SECOND / "selection.md", text)
    comparison = read_json(SECOND / "comparison.json")["heldout"][0]
    methods = comparison["methods"]
    spread = [stdev(m["per_seed"].values()) for m in methods if len(m["per_seed"]) > 1]
    pooled = fmean(v * v for v in spread) ** 0.5 if spread else float("nan")
    seeds = len(methods[0]["seeds"]) if methods else 0
    power = (
        f"Observed per-seed standard deviation of the held-out differences (pooled over arms): {pooled:.5f}; "
        f"with {seeds} seeds the smallest difference detectable with 80% power at 0.05/3 is "
        f"{minimum_detectable(pooled, seeds, 0.05 / 3):.5f} (estimate).\n"
        if seeds > 1
        else ""
    )
    results = (SECOND / "results.md").read_text(encoding="utf-8")
    base = next((c for c in cells if c["method"] == "base"), None)
    effect = ""
    if base is not None and base.get("heldout"):
        randoms = [heldout_values(c) for c in cells if c["method"] == "random"]
        macro = fmean(fmean(r.values()) for r in randoms if r)
        change = macro - base["heldout"]["macro"]
        effect = f"Tuning effect on held-out macro NLL (random's mean minus the base model): {change:+.4f}\n"
    return results + "\n" + text + "\n" + power + effect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()
    print(first_study())
    print(second_study())
    if not args.skip_calibration:
        subprocess.run([sys.executable, str(Path(__file__).with_name("calibration.py"))], check=True)


if __name__ == "__main__":
    main()
