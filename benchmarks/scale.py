"""Scale benchmark, run by hand: local against Ray scoring, and peak RSS of `daar score` by pool size.

    .venv/bin/python benchmarks/scale.py executors [--pool PATH] [--model smollm2-135m-instruct]
    .venv/bin/python benchmarks/scale.py memory [--sizes 16000 160000 1600000]

`executors`: one fit (examples: 8 real rows per domain of the shared domain files, drawn with
random.Random(7); probe set 2,000 rows), then `daar score` of the pool three times, each in its
own process: local with 1 torch thread, Ray with 1 worker and with 2 workers of 1 thread each (a
local Ray cluster started by the command). Prints rows/s of each and whether the three
selections (`daar select --scores`, default settings) are byte-identical.

`memory`: pools of the given sizes built from the shared pool (copy k of row r gets id
"<id>-<k>"), one file each in every `--formats` (jsonl.gz, jsonl: one uncompressed file, parquet:
row groups of 65,536 rows), in a temporary folder (never in the repo); one fit with a tiny random
model (4 layers, hidden 64, the real SmolLM2 tokenizer) on the first pool; then each `daar
score` process's peak RSS (os.wait4, the child's own high-water mark) and rows/s. With
`--executor ray` the command's process tree is sampled every 0.5 s (psutil): the driver's peak,
the largest scoring actor's peak and the peak of the whole tree (Ray's own daemons included).

    .venv/bin/python benchmarks/scale.py memory --sizes 160000 1600000 --formats parquet jsonl \\
        --executor ray --workers 2 --max-length 128 --batch-tokens 16384

`seek --pool FILE.jsonl[.gz]`: CPU seconds to reach the last block of one JSON lines file by
parsing every row before it (how a Ray actor read a block before) and from its byte offset (now).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NEWLINE = b"\n"
DOMAINS = ("common_sense", "reasoning", "mathematics", "coding")


def daar(*args: str, tree: dict[str, float] | None = None) -> tuple[float, float]:
    """Run `daar ARGS` in a fresh process; (wall seconds, peak RSS in MB of that process). With
    `tree`, its process tree is sampled meanwhile and the peaks (MB) are written into it."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "daar", *args], stderr=subprocess.DEVNULL)
    sampler = None
    if tree is not None:
        sampler = threading.Thread(target=_sample_tree, args=(proc.pid, tree), daemon=True)
        sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    if sampler is not None:
        sampler.join(timeout=5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"daar {' '.join(args)} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def _sample_tree(pid: int, peaks: dict[str, float]) -> None:
    """Peak RSS (MB) of the whole tree, of its largest scoring actor and of the driver, and the
    CPU seconds the scoring actors used (their last sample): work per row, whatever the load."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    peaks.update(tree=0.0, actor=0.0, driver=0.0, actor_cpu=0.0)
    used: dict[int, float] = {}
    while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss / 2**20
                name = " ".join(proc.cmdline())
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += rss
            if "_RayScorer" in name or "MapWorker" in name:
                peaks["actor"] = max(peaks["actor"], rss)
                used[proc.pid] = times.user + times.system
            if proc.pid == pid:
                peaks["driver"] = max(peaks["driver"], rss)
        peaks["tree"] = max(peaks["tree"], total)
        peaks["actor_cpu"] = sum(used.values())
        time.sleep(0.5)


def examples_file(work: Path) -> Path:
    rng = random.Random(7)
    examples = {}
    for name in DOMAINS:
        with gzip.open(SHARED / "pool" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        examples[name] = [{k: r.get(k, "") for k in ("instruction", "input", "output")} for r in rng.sample(rows, 8)]
    path = work / "examples.json"
    path.write_text(json.dumps(examples), encoding="utf-8")
    return path


def fit_options(args: argparse.Namespace) -> list[str]:
    """Settings the scorers inherit from the fitted folder."""
    options = ["--max-length", str(args.max_length)] if args.max_length else []
    return options + (["--set", f"batch_tokens={args.batch_tokens}"] if args.batch_tokens else [])


def executors(args: argparse.Namespace, work: Path) -> None:
    fitted = work / "fitted"
    seconds, _ = daar(
        "fit", str(args.pool), "--out", str(fitted), "--model", args.model, "--examples-file", str(examples_file(work)),
        "--probe-size", "2000", "--device", "cpu", *fit_options(args),
    )  # fmt: skip
    print(f"fit: {seconds:.1f} s")
    rows = sum(1 for _ in gzip.open(args.pool, "rb"))
    runs = {"local, 1 thread": ["--threads", "1"]}
    for workers in (1, 2):
        name = f"ray, {workers} worker(s) x 1 thread"
        runs[name] = ["--executor", "ray", "--workers", str(workers), "--threads", "1"]
    selected = {}
    for i, (name, extra) in enumerate(runs.items()):
        scores, run = work / f"scores-{i}", work / f"run-{i}"
        seconds, rss = daar("score", str(args.pool), "--fitted", str(fitted), "--out", str(scores), *extra)
        daar("select", "--scores", str(scores), "--out", str(run))
        selected[name] = (run / "selected.jsonl").read_bytes()
        print(f"{name}: {seconds:.1f} s, {rows / seconds:.1f} rows/s (driver peak RSS {rss:.0f} MB)")
    first = next(iter(selected.values()))
    same = all(s == first for s in selected.values())
    print(f"selections identical: {same} ({first.count(NEWLINE)} rows each)")


def build_pool(source: Path, target: Path, rows: int) -> Path:
    """`rows` rows cycling through `source`, copy k of a row with id '<id>-<k>', written as the
    target's suffix says: .jsonl.gz, .jsonl or .parquet (row groups of PARQUET_GROUP rows)."""
    if target.exists():
        return target
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        base = [json.loads(line) for line in handle]
    tmp = target.with_name(target.name + ".tmp")

    def copies():
        for i in range(rows):
            row = dict(base[i % len(base)])
            row["id"] = f"{row['id']}-{i // len(base)}"
            yield row

    if target.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.Table.from_pylist(base[:1]).schema
        with pq.ParquetWriter(tmp, schema) as writer:
            group: list[dict] = []
            for row in copies():
                group.append(row)
                if len(group) == PARQUET_GROUP:
                    writer.write_table(pa.Table.from_pylist(group, schema=schema), row_group_size=PARQUET_GROUP)
                    group = []
            if group:
                writer.write_table(pa.Table.from_pylist(group, schema=schema), row_group_size=PARQUET_GROUP)
    else:
        opener = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) if target.name.endswith(".gz") else None
        with opener or open(tmp, "w", encoding="utf-8") as out:
            for row in copies():
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.rename(target)
    return target


PARQUET_GROUP = 65_536
SUFFIX = {"jsonl.gz": ".jsonl.gz", "jsonl": ".jsonl", "parquet": ".parquet"}


def memory(args: argparse.Namespace, work: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_tiny_model

    model = make_tiny_model(work / "tiny-model")
    fitted = work / "fitted-tiny"
    first = build_pool(args.pool, work / f"pool-{min(args.sizes)}.jsonl.gz", min(args.sizes))
    if not (fitted / "fit.json").exists():
        seconds, _ = daar(
            "fit", str(first), "--out", str(fitted), "--model", str(model),
            "--examples-file", str(examples_file(work)), "--probe-size", "2000", "--device", "cpu", *fit_options(args),
        )  # fmt: skip
        print(f"fit (tiny model): {seconds:.1f} s", flush=True)
    extra = ["--threads", "1"]
    if args.executor == "ray":
        extra += ["--executor", "ray", "--workers", str(args.workers)]
        # Ray starts its workers at nice 15: on a machine shared with other jobs the actors then
        # get a few percent of a core (measured: 4% each beside three nice-0 processes) and rows/s
        # measures the scheduler. At 0 they compete as the local executor's process does.
        os.environ.setdefault("RAY_worker_niceness", "0")
    for kind in args.formats:
        for n in args.sizes:
            pool = build_pool(args.pool, work / f"pool-{n}{SUFFIX[kind]}", n)
            out = work / f"scores-{kind}-{n}-{args.executor}"
            shutil.rmtree(out, ignore_errors=True)
            tree: dict[str, float] | None = {} if args.executor == "ray" else None
            seconds, rss = daar("score", str(pool), "--fitted", str(fitted), "--out", str(out), *extra, tree=tree)
            line = f"daar score, {kind}, {n:,} rows, {args.executor}: peak RSS {rss:.0f} MB"
            if tree:
                line += f" (sampled: driver {tree['driver']:.0f}, largest actor {tree['actor']:.0f}, "
                line += f"whole tree {tree['tree']:.0f} MB; actors' CPU {tree['actor_cpu']:.0f} s, "
                line += f"{1000 * tree['actor_cpu'] / n:.2f} s per 1,000 rows)"
            print(f"{line}, {seconds:.1f} s ({n / seconds:.0f} rows/s)", flush=True)
            shutil.rmtree(out / "features", ignore_errors=True)  # disk, not memory


def seek(args: argparse.Namespace, work: Path) -> None:
    """CPU seconds to reach the last block of a JSON lines file: parsing every row before it (how a
    Ray actor read a block before issue 18) against starting at its byte offset (now)."""
    from daar.read.sources import raw_rows
    from daar.read.streams import index_jsonl, rows_from

    path = args.pool
    clock = time.process_time
    start = clock()
    rows, starts = index_jsonl(path, args.chunk_rows)
    index_seconds = clock() - start
    last = args.chunk_rows * (len(starts) - 1)
    start = clock()
    next(row for row in raw_rows(path, path.name.lower()) if row.position >= last)
    parsed = clock() - start
    start = clock()
    assert next(rows_from(path, last, starts[-1])).position == last
    offset = clock() - start
    print(
        f"{path.name}: {rows:,} rows, offsets noted in {index_seconds:.2f} s; the last block (row {last:,}) "
        f"reached by parsing from the top in {parsed:.2f} s, from its byte offset in {offset:.3f} s (CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("executors", "memory", "seek"))
    parser.add_argument("--chunk-rows", type=int, default=4096, help="block size (seek)")
    parser.add_argument("--pool", type=Path, default=SHARED / "pool" / "pool.jsonl.gz")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16_000, 160_000, 1_600_000])
    parser.add_argument("--formats", nargs="+", choices=sorted(SUFFIX), default=["jsonl.gz"])
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (--executor ray).")
    parser.add_argument("--max-length", type=int, help="Tokens read per row (default: daar's, 512).")
    parser.add_argument("--batch-tokens", type=int, help="Tokens per prober batch (default: daar's, by model size).")
    parser.add_argument("--work", type=Path, help="Temporary folder (default: a new one under /tmp, removed after).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="daar-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        {"executors": executors, "memory": memory, "seek": seek}[args.part](args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
