"""The shared cache under load (issue 26, item 5): N `daar select` runs at once on one pool and one
cache, seeds 1..N, with `daar cache --max-size 0` run every few seconds during them, against the
same runs alone. Run by hand (an idle machine; the 16k pool takes a while on a CPU):

    .venv/bin/python benchmarks/cache_load.py [--runs 4] [--clean-every 10] [--out runs/bench-cache-load]
    .venv/bin/python benchmarks/cache_load.py -- --sample 2000     # arguments after -- go to every select

Phase 1, alone: the runs one after the other in a fresh cache, no clean-up (a cache never changes
a result: tests/cache/test_damaged_entries.py). Phase 2, together: all runs at once in another
fresh cache, the clean-up looping meanwhile. Prints each run's wall time in both phases, the
clean-ups and entries they removed, how often a run waited for an entry another was computing,
and whether every run's outputs are byte for byte its alone outputs; exits 1 if one is not, if a
run failed, or if one ran past --timeout (a run that waits forever). Results also go to
OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"
DEFAULT_EXAMPLES = ROOT / "configs" / "examples_smollm2_generated.yaml"
OUTPUTS = ("selected.jsonl", "rejected.jsonl", "scores.parquet", "analysis.json", "map.json")


def daar(*args: str) -> list[str]:
    return [sys.executable, "-m", "daar", *args]


def start(args: argparse.Namespace, out: Path, cache: Path, seed: int) -> subprocess.Popen:
    command = daar("select", str(args.pool), "--out", str(out), "--cache-dir", str(cache), "--seed", str(seed))
    command += ["--examples-file", str(args.examples_file), "--no-report", *args.extra]
    log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)


def outputs(out: Path) -> dict[str, bytes]:
    files = [out / name for name in OUTPUTS] + sorted((out / "fitted").glob("*")) + sorted((out / "examples").glob("*"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files if p.is_file()}


def finish(runs: dict[int, subprocess.Popen], started: float, timeout: float, tick=None) -> dict[int, dict]:
    """Wait for the runs (calling `tick` meanwhile); each run's exit code and wall seconds."""
    done: dict[int, dict] = {}
    while len(done) < len(runs):
        for seed, proc in runs.items():
            if seed not in done and proc.poll() is not None:
                done[seed] = {"returncode": proc.returncode, "seconds": round(time.perf_counter() - started, 1)}
        if time.perf_counter() - started > timeout:
            for seed, proc in runs.items():
                if seed not in done:
                    proc.kill()
                    done[seed] = {"returncode": "killed after --timeout", "seconds": None}
        if tick is not None:
            tick()
        time.sleep(0.5)
    return done


class Cleaner:
    """`daar cache --max-size 0` every `every` seconds, in a process of its own, so that the runs'
    wall times are read as they end; `stop` waits for the last one and returns them all."""

    def __init__(self, cache: Path, every: float) -> None:
        self.cache, self.every = cache, every
        self.proc: subprocess.Popen | None = None
        self.began = 0.0
        self.done: list[dict] = []

    def tick(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            text = " ".join((self.proc.stdout.read() if self.proc.stdout else "").split())
            found = re.search(r"removed (\d+) entries", text)
            self.done.append({"returncode": self.proc.returncode, "removed": int(found.group(1)) if found else None})
            self.proc = None
        if self.proc is None and time.perf_counter() - self.began >= self.every:
            self.began = time.perf_counter()
            command = daar("cache", "--cache-dir", str(self.cache), "--max-size", "0")
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> list[dict]:
        if self.proc is not None:
            self.proc.wait()
            self.tick()
        return self.done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--examples-file", type=Path, default=DEFAULT_EXAMPLES)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--clean-every", type=float, default=10.0, help="seconds between clean-ups")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds before a run counts as stuck")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-cache-load")
    parser.add_argument("extra", nargs="*", help="after --: more arguments for every `daar select`")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    seeds = list(range(1, args.runs + 1))

    alone: dict[int, dict] = {}
    for seed in seeds:
        began = time.perf_counter()
        alone |= finish(
            {seed: start(args, args.out / f"alone-{seed}", args.out / "cache-alone", seed)}, began, args.timeout
        )
        print(f"alone, seed {seed}: {alone[seed]}", flush=True)

    shared = args.out / "cache-together"
    cleaner = Cleaner(shared, args.clean_every)
    began = time.perf_counter()
    runs = {seed: start(args, args.out / f"together-{seed}", shared, seed) for seed in seeds}
    together = finish(runs, began, args.timeout, cleaner.tick)
    cleanups = cleaner.stop()

    rows, ok = [], True
    for seed in seeds:
        log = (args.out / f"together-{seed}.log").read_text(errors="replace")
        same = together[seed]["returncode"] == 0 and alone[seed]["returncode"] == 0
        same = same and outputs(args.out / f"together-{seed}") == outputs(args.out / f"alone-{seed}")
        ok &= same
        waits = log.count("waiting for another daar process")
        rows.append({"seed": seed, "alone": alone[seed], "together": together[seed], "waits": waits, "same": same})
    summary = {
        "runs": rows,
        "together_seconds": round(time.perf_counter() - began, 1),
        "alone_seconds_sum": round(sum(r["alone"]["seconds"] or 0 for r in rows), 1),
        "cleanups": len(cleanups),
        "cleanup_failures": sum(1 for c in cleanups if c["returncode"] != 0),
        "entries_removed": sum(c["removed"] or 0 for c in cleanups),
        "all_outputs_as_alone": ok,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'seed':>4} {'alone s':>9} {'together s':>11} {'waits':>6}  outputs as alone")
    for r in rows:
        print(
            f"{r['seed']:>4} {r['alone']['seconds']!s:>9} {r['together']['seconds']!s:>11} {r['waits']:>6}  {r['same']}"
        )
    print(
        f"together: {summary['together_seconds']} s for {len(seeds)} runs (alone, one after the other: "
        f"{summary['alone_seconds_sum']} s); {summary['cleanups']} clean-ups ({summary['cleanup_failures']} failed) "
        f"removed {summary['entries_removed']} entries; every run as alone: {ok}"
    )
    return 0 if ok and not summary["cleanup_failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
