"""What checking the cache's digests costs a warm `daar select` (issue 26, item 1), run by hand on an
idle machine: the same selection with the code before and after, each with a warm cache of its own.

    git worktree add /tmp/daar-before d317835        # the code before issue 26 (any checkout of it)
    .venv/bin/python benchmarks/cache_digests.py --before /tmp/daar-before/src --after src [--repeats 3]

Each side first runs once to fill its cache (OUT/cache-before, OUT/cache-after; the 16k pool's
features take a while on a CPU), then the timed runs alternate before/after, `--repeats` each.
Printed per side: the median of the manifests' wall_seconds (the run itself) and of the processes'
wall times (with start-up), and the difference after - before. Then, in this process with the
`--after` code, the digest checks alone: every finished entry of OUT/cache-after checked as a run
reads it (mapped, sized, hashed), twice; the entries a warm run reads are the features and stages
ones (token ids and counts are read only when features are computed or a token budget is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"
DEFAULT_EXAMPLES = ROOT / "configs" / "examples_smollm2_generated.yaml"


def select(args: argparse.Namespace, side: str, run: str) -> tuple[float, float]:
    """(manifest wall_seconds, process wall seconds) of one `daar select` with `side`'s code."""
    out = args.out / f"{side}-{run}"
    command = [sys.executable, "-m", "daar", "select", str(args.pool), "--out", str(out)]
    command += ["--examples-file", str(args.examples_file), "--cache-dir", str(args.out / f"cache-{side}"), *args.extra]
    env = {**os.environ, "PYTHONPATH": str(Path(getattr(args, side)).resolve())}
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{side} run {run} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((out / "manifest.json").read_text())["wall_seconds"], seconds


def checks(cache: Path) -> dict[str, float]:
    """Seconds (wall and CPU) to check every finished entry of `cache`, by kind."""
    from daar.utils.cache_size import entries

    found: dict[str, float] = {}
    for entry in entries(cache):
        own = entry.cache_entry
        if not own.digests.exists():
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        own.check()
        found[f"{entry.kind} wall"] = found.get(f"{entry.kind} wall", 0.0) + time.perf_counter() - wall
        found[f"{entry.kind} cpu"] = found.get(f"{entry.kind} cpu", 0.0) + time.process_time() - cpu
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="src folder of the code before")
    parser.add_argument("--after", type=Path, required=True, help="src folder of the code after")
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--examples-file", type=Path, default=DEFAULT_EXAMPLES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-cache-digests")
    parser.add_argument("extra", nargs="*", help="after --: more arguments for every `daar select`")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for side in ("before", "after"):
        print(f"{side}: warming its cache ({select(args, side, 'warm')[1]:.1f} s)", flush=True)
    timed: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for repeat in range(args.repeats):
        for side in ("before", "after"):
            timed[side].append(select(args, side, str(repeat)))
            print(
                f"{side} {repeat}: wall_seconds {timed[side][-1][0]:.2f}, process {timed[side][-1][1]:.2f}", flush=True
            )
    median = {side: [statistics.median(t[i] for t in timed[side]) for i in (0, 1)] for side in timed}
    for i, what in enumerate(("manifest wall_seconds", "process wall seconds")):
        before, after = median["before"][i], median["after"][i]
        print(f"{what}: before {before:.2f}, after {after:.2f}, after - before {after - before:+.2f} "
              f"({100 * (after - before) / before:+.2f}%)")  # fmt: skip
    sys.path.insert(0, str(args.after.resolve()))
    for attempt in (1, 2):
        found = checks(args.out / "cache-after")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(found.items()))
        print(f"digest checks alone, pass {attempt} (s): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
