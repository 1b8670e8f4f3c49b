"""Tokens per second of `daar tune` on CPU: the SmolLM2-135M learner, one thread, a fixed set of rows.

    OMP_NUM_THREADS=1 python benchmarks/tune_cpu.py --pool ../shared/data/pool/pool.jsonl.gz \\
        --src /path/to/old/checkout /path/to/this/checkout

Each run is `daar.tune.tune` with the default settings on CPU (steps of 4 passes of 4 rows, cut
by length, max_length 2048, seed 42) for --steps steps on the first --rows rows of --pool, in a
fresh folder, so nothing is reused. It prints the manifest's tokens/s (real tokens over the
training loop's seconds) and the CPU seconds of the whole call. With --src, every checkout named
runs in a process of its own with its `src` first on the path, the checkouts taking turns
--repeats times, so that a slower moment of the machine falls on both; the medians come last.
Only the `tune` API that older commits have too is used, so the script measures them as well.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rows(pool: Path, count: int) -> list[dict]:
    opener = gzip.open if pool.suffix == ".gz" else open
    rows = []
    with opener(pool, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) == count:
                break
    return rows


def once(args: argparse.Namespace) -> dict:
    """One tuning run in this process; its figures as a dict."""
    import torch

    import daar
    from daar.tune import TuneConfig, tune

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tune-cpu-") as folder:
        selection = Path(folder) / "rows.jsonl"
        selection.write_text("".join(json.dumps(r) + "\n" for r in _rows(args.pool, args.rows)), encoding="utf-8")
        settings = TuneConfig(device="cpu", max_steps=args.steps, compile=False)
        started = time.process_time()
        result = tune(selection, args.model, Path(folder) / "out", settings)
        cpu = time.process_time() - started
    m = result.manifest
    return {
        "code": str(Path(daar.__file__).resolve().parents[1]),
        "steps": m["steps"],
        "tokens": m["tokens_this_run"],
        "loop_seconds": m["train_loop_seconds"],
        "tokens_per_second": m["tokens_per_second"],
        "cpu_seconds": round(cpu, 2),
        "final_loss": m["final_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True, help="rows to tune on (.jsonl or .jsonl.gz)")
    parser.add_argument("--rows", type=int, default=64, help="the first N rows (default 64: 4 steps of 16)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--src", type=Path, nargs="*", help="checkouts to compare, each run with its src/ first")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once or not args.src:
        runs = [once(args) for _ in range(1 if args.once else args.repeats)]
        for run in runs:
            print(json.dumps(run), flush=True)
        return
    found: dict[Path, list[dict]] = {src: [] for src in args.src}
    own = [a for a in sys.argv[1:] if a not in {str(s) for s in args.src} and a != "--src"]
    for _ in range(args.repeats):
        for src in args.src:
            env = {**os.environ, "PYTHONPATH": str(src.resolve() / "src"), "OMP_NUM_THREADS": "1"}
            out = subprocess.run(
                [sys.executable, __file__, *own, "--once"], env=env, capture_output=True, text=True, check=True
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            found[src].append(run)
            print(json.dumps({"src": str(src), **run}), flush=True)
    print(f"\n{'checkout':50}{'tokens/s (median)':>20}{'cpu s (median)':>16}{'tokens':>8}")
    for src, runs in found.items():
        rate = statistics.median(r["tokens_per_second"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        print(f"{str(src):50}{rate:20.1f}{cpu:16.1f}{runs[0]['tokens']:8d}")


if __name__ == "__main__":
    main()
