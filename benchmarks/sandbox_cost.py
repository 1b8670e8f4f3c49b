"""Cost per run of the code sandbox, and a check that every benchmark reference still passes.

    python benchmarks/sandbox_cost.py [--runs 200] [--src OLD/src --src NEW/src] [--bench DIR]
    python benchmarks/sandbox_cost.py --references [--bench DIR] [--workers 4]

Timing: `run_python` as `daar eval` calls it, wall time as the caller sees it, for four runs taken
round-robin so each sees the same load: a trivial program alone (`x = 1; assert x == 1`, the figure in
docs/SANDBOX.md), an MBPP item (MBPP/2's reference code and its 3 asserts), a HumanEval item
(HumanEval/0's canonical solution and its `check`, 7 calls) and HumanEval/32 (`check` calls the
answer 100 times). Prints median, min, p10, p90 and max in ms. With `--src` (twice or more), each
source tree (say the base commit's `src` and this branch's) runs in a worker process of its own,
and the workers take turns run by run, so old and new are timed under the same load. The script
uses only `run_python`, `mbpp_check` and `humaneval_check`, which older commits have as well.

--references: every MBPP reference solution and HumanEval canonical solution must pass, and a wrong
answer for each (the function returning None) must not; prints the counts and each exception. Runs
get 30 s (`--timeout`), not the evaluator's 10: this checks verdicts, and a loaded machine running
several at once can take longer than 10 s over MBPP/123's slow reference.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench"
KINDS = ("trivial program", "MBPP/2", "HumanEval/0", "HumanEval/32")
Job = tuple[str, "str | None", "tuple[str, ...] | None"]  # code, tests, shared


def _rows(bench: Path, name: str) -> list[dict]:
    with gzip.open(bench / name, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _jobs(bench: Path) -> dict[str, Job]:
    """(code, tests, shared) of each timed run, as the evaluator builds them."""
    from daar.evaluate.metrics import humaneval_check, mbpp_check

    mbpp = {row["task_id"]: row for row in _rows(bench, "mbpp.jsonl.gz")}
    humaneval = {row["task_id"]: row for row in _rows(bench, "humaneval.jsonl.gz")}
    checks = {
        "MBPP/2": mbpp_check(mbpp[2]["code"], mbpp[2]),
        "HumanEval/0": humaneval_check(humaneval["HumanEval/0"]["canonical_solution"], humaneval["HumanEval/0"]),
        "HumanEval/32": humaneval_check(humaneval["HumanEval/32"]["canonical_solution"], humaneval["HumanEval/32"]),
    }
    jobs: dict[str, Job] = {"trivial program": ("x = 1\nassert x == 1\n", None, None)}
    jobs.update({name: (check.code, check.tests, check.shared) for name, check in checks.items()})
    return jobs


def _time_one(job: Job) -> float:
    from daar.evaluate.sandbox import run_python

    code, tests, shared = job
    start = time.perf_counter()
    result = run_python(code, tests=tests, shared=shared) if tests is not None else run_python(code)
    seconds = time.perf_counter() - start
    if not result.passed:
        raise SystemExit(f"a timed run did not pass: {result.status} {result.detail}\n{result.stderr[-800:]}")
    return seconds * 1000


def _worker(bench: Path) -> None:
    """Serve timing requests from the parent: one kind's name per line in, milliseconds out."""
    jobs = _jobs(bench)
    print("ready", flush=True)
    for line in sys.stdin:
        print(f"{_time_one(jobs[line.strip()]):.3f}", flush=True)


def _summary(label: str, values: list[float]) -> str:
    deciles = statistics.quantiles(values, n=10)
    return (f"{label:<28} {statistics.median(values):8.1f} {min(values):8.1f} {deciles[0]:8.1f} "
            f"{deciles[-1]:8.1f} {max(values):8.1f}")


def time_runs(runs: int, sources: list[str], bench: Path) -> None:
    if not sources:
        jobs = _jobs(bench)
        timings = {("", kind): [] for kind in KINDS}
        for _ in range(3):  # warm the page cache and the interpreter lookup
            _time_one(jobs["trivial program"])
        for _ in range(runs):
            for kind in KINDS:
                timings[("", kind)].append(_time_one(jobs[kind]))
    else:
        workers = {}
        for source in sources:
            env = {**os.environ, "PYTHONPATH": str(Path(source).resolve())}
            workers[source] = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--bench", str(bench)], env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )
            if workers[source].stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise SystemExit(f"the worker for {source} did not start")
        timings = {(source, kind): [] for source in sources for kind in KINDS}
        for round_ in range(runs + 3):
            for kind in KINDS:
                for source, worker in workers.items():
                    worker.stdin.write(kind + "\n")  # type: ignore[union-attr]
                    worker.stdin.flush()  # type: ignore[union-attr]
                    value = float(worker.stdout.readline())  # type: ignore[union-attr]
                    if round_ >= 3:  # the first rounds warm up
                        timings[(source, kind)].append(value)
        for worker in workers.values():
            worker.stdin.close()  # type: ignore[union-attr]
            worker.wait()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{runs} runs each, round-robin; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at the end; DAAR_SANDBOX={os.environ.get('DAAR_SANDBOX', '') or 'namespace'}")
    print(f"{'run (ms)':<28} {'median':>8} {'min':>8} {'p10':>8} {'p90':>8} {'max':>8}")
    for source in sources or [""]:
        if source:
            print(f"-- {source}")
        for kind in KINDS:
            print(_summary(kind, timings[(source, kind)]))


def check_references(bench: Path, workers: int, timeout: float) -> int:
    """Run every reference (must pass) and a wrong answer per item (must fail); 0 if all did."""
    from daar.evaluate.metrics import humaneval_check, mbpp_check
    from daar.evaluate.sandbox import run_python

    items = []
    for row in _rows(bench, "mbpp.jsonl.gz"):
        name = re.search(r"assert\W*(\w+)\s*\(", row["test_list"][0]).group(1)  # type: ignore[union-attr]
        wrong = f"def {name}(*args, **kwargs):\n    return None\n"
        items.append((f"MBPP/{row['task_id']}", mbpp_check(row["code"], row), mbpp_check(wrong, row)))
    for row in _rows(bench, "humaneval.jsonl.gz"):
        items.append((row["task_id"], humaneval_check(row["canonical_solution"], row),
                      humaneval_check("    return None\n", row)))

    def run(item: tuple) -> tuple[str, str, str]:
        name, right, wrong = item
        good = run_python(right.code, timeout, tests=right.tests, shared=right.shared)
        bad = run_python(wrong.code, timeout, tests=wrong.tests, shared=wrong.shared)
        return name, f"{good.status} {good.detail}", bad.status

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, items))
    failed = [(name, good) for name, good, _ in results if not good.startswith("passed")]
    wrong_passed = [name for name, _, bad in results if bad == "passed"]
    print(f"{len(results)} items in {time.perf_counter() - start:.0f} s: {len(results) - len(failed)} references "
          f"passed, {len(failed)} did not; {len(wrong_passed)} wrong answers (returning None) passed")
    for name, good in failed:
        print(f"  reference {name}: {good}")
    if wrong_passed:
        print(f"  wrong answers that passed (items whose expected answers are all None?): {', '.join(wrong_passed)}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each kind")
    parser.add_argument("--src", action="append", default=[], help="a source tree to time (repeat to compare)")
    parser.add_argument("--bench", type=Path, default=Path(os.environ.get("DAAR_BENCH_DIR", DEFAULT_BENCH)))
    parser.add_argument("--references", action="store_true", help="check every reference instead of timing")
    parser.add_argument("--workers", type=int, default=4, help="runs at once for --references")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per run for --references")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.bench)
    elif args.references:
        raise SystemExit(check_references(args.bench, args.workers, args.timeout))
    else:
        time_runs(args.runs, args.src, args.bench)


if __name__ == "__main__":
    main()
