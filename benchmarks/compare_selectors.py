"""DaaR against each baseline at the same ratio on a sample of the shared pool (run by hand).

    .venv/bin/python benchmarks/compare_selectors.py [--sample 2000] [--methods daar,random,...]

Every method runs through `daar.pipeline.run_select` exactly as `daar select --method NAME` would,
all sharing one cache folder, so the prober's features are computed once (by the first method
that needs them: put daar first) and the wall time of the later methods is their own work only.
The ground-truth `domain` field is read for evaluation only (`show_domain_field`), never by a
selector. Prints a table and writes, under --out: one run folder per method, table.md,
table.csv, results.json and report.html (all runs side by side, via daar.report.write_report).

Columns: wall seconds; the selection's ground-truth domain counts and their entropy (nats, and
normalised by log K); inter- and intra-diversity of the selection on e(x) with ground-truth
labels (from each run's analysis.json "ground_truth" section); overlap with DaaR's selection as
|A ∩ D| / |A| and Jaccard |A ∩ D| / |A ∪ D|, over the rows both runs scored ("-" when a smaller
--ifd-sample shares no row with DaaR's sample).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"
DEFAULT_METHODS = "daar,random,instruction_length,output_length,kcenter,deita,ifd,alpagasus"
MODEL_SCORED = {"ifd", "alpagasus"}  # a full forward pass (or two) of the LM per row: slow on CPU


def run_ids(run_dir: Path) -> tuple[list[str], set[str]]:
    """(selected ids, every scored id) of a run folder, from scores.parquet (the run's own record)."""
    import pandas as pd

    scores = pd.read_parquet(Path(run_dir) / "scores.parquet", columns=["id", "selected"])
    ids = scores["id"].astype(str)
    return ids[scores["selected"].astype(bool)].tolist(), set(ids)


def overlap(
    selected: list[str], scored: set[str], reference: tuple[list[str], set[str]]
) -> tuple[float | None, float | None]:
    """|A ∩ D| / |A| and Jaccard, both over the rows that both runs scored (a run on a smaller
    sample is compared with the part of the reference's selection it could have chosen)."""
    both = scored & reference[1]
    mine, theirs = set(selected) & both, set(reference[0]) & both
    if not mine:
        return None, None
    common = len(mine & theirs)
    return common / len(mine), common / len(mine | theirs)


def summarize_run(
    method: str, run_dir: Path, seconds: float, reference: tuple[list[str], set[str]] | None
) -> dict[str, Any]:
    """One table row from a finished run folder; `reference` = run_ids() of the run to measure overlap with."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    analysis_path = run_dir / "analysis.json"
    analysis = json.loads(analysis_path.read_text(encoding="utf-8")) if analysis_path.exists() else {}
    truth = analysis.get("ground_truth") or {}
    if not truth and analysis.get("labels") == "domain":
        truth = analysis  # a method without pseudo-domains analyses by the ground-truth field directly
    mix = (truth.get("mix") or {}).get("selected") or (manifest.get("ground_truth") or {}).get("selected") or {}
    diversity = truth.get("selected") or {}
    ids, scored = run_ids(run_dir)
    shared, jaccard = overlap(ids, scored, reference) if reference is not None else (None, None)
    counts = manifest.get("counts") or {}
    return {
        "method": method,
        "seconds": round(seconds, 1),
        "rows_scored": counts.get("scored"),
        "selected": len(ids),
        "domain_counts": mix.get("counts") or {},
        "entropy": mix.get("entropy"),
        "normalized_entropy": mix.get("normalized_entropy"),
        "inter": diversity.get("inter_diversity"),
        "intra": diversity.get("intra_diversity"),
        "overlap_with_daar": shared,
        "jaccard_with_daar": jaccard,
        "run_dir": str(run_dir),
    }


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the markdown and CSV tables (one column per domain)."""
    domains = sorted({d for row in rows for d in row["domain_counts"]})
    header = ["method", "seconds", "rows scored", "selected", *domains, "mix entropy", "entropy / log K"]
    header += ["inter-div", "intra-div", "overlap w/ daar", "Jaccard w/ daar"]
    cells = []
    for row in rows:
        cells.append(
            [row["method"], _num(row["seconds"], 1), _num(row["rows_scored"]), _num(row["selected"])]
            + [_num(row["domain_counts"].get(d, 0)) for d in domains]
            + [_num(row["entropy"]), _num(row["normalized_entropy"], 3), _num(row["inter"]), _num(row["intra"])]
            + [_num(row["overlap_with_daar"], 3), _num(row["jaccard_with_daar"], 3)]
        )
    return header, cells


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header, cells = table_columns(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict[str, Any]], out: Path, note: str) -> None:
    from daar.utils.cache import atomic_path, write_json, write_text

    header, cells = table_columns(rows)
    write_text(out / "table.md", f"{note}\n\n{markdown_table(rows)}")
    with atomic_path(out / "table.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(cells)
    write_json(out / "results.json", {"note": note, "rows": rows})


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from daar.config import SelectConfig
    from daar.pipeline import run_select

    out, cache = Path(args.out), Path(args.cache_dir or Path(args.out) / "cache")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods.sort(key=lambda m: m != "daar")  # daar first: it computes the shared features and is the reference
    rows: list[dict[str, Any]] = []
    reference: tuple[list[str], set[str]] | None = None
    for method in methods:
        sample = args.ifd_sample if method in MODEL_SCORED and args.ifd_sample else args.sample
        settings: dict[str, Any] = {"method": method, "sample": sample, "ratio": args.ratio, "seed": args.seed}
        if args.model:
            settings["model"] = args.model
        if args.examples_file and method == "daar":
            settings["examples_file"] = args.examples_file
        print(f"== {method}: {sample} rows, ratio {args.ratio}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = run_select(
            SelectConfig(**settings),
            Path(args.pool),
            out / method,
            cache_dir=cache,
            show_domain_field="domain",
            report=False,
        )
        seconds = time.perf_counter() - start
        if reference is None:  # overlap is measured against daar's selection (else the first method's)
            reference = run_ids(result.out_dir)
        rows.append(summarize_run(method, result.out_dir, seconds, reference))
        print(markdown_table(rows[-1:]), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--sample", type=int, default=2000, help="rows drawn from the pool (seeded)")
    parser.add_argument("--ifd-sample", type=int, default=None, help="smaller sample for ifd and alpagasus")
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", default=None, help="model alias or folder (default: the built-in one)")
    parser.add_argument("--examples-file", type=Path, default=None, help="daar: seed rows per domain, not generated")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "compare")
    parser.add_argument("--cache-dir", type=Path, default=None, help="shared feature cache (default OUT/cache)")
    args = parser.parse_args(argv)
    if not Path(args.pool).exists():
        parser.error(f"pool not found: {args.pool}")
    rows = run_all(args)
    note = (
        f"Selectors at ratio {args.ratio} on a seeded sample of {args.sample} rows of {args.pool.name}"
        + (f" ({args.ifd_sample} rows for {', '.join(sorted(MODEL_SCORED))})" if args.ifd_sample else "")
        + "; domain counts, entropy and diversity use the ground-truth `domain` field (evaluation only)."
    )
    write_tables(rows, Path(args.out), note)
    from daar.report import write_report

    report = write_report([Path(r["run_dir"]) for r in rows], Path(args.out) / "report.html")
    print(note)
    print(markdown_table(rows))
    print(f"wrote {args.out / 'table.md'}, table.csv, results.json and {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
