"""Under load (issue 26): runs on one pool and one shared cache at once, with `daar cache
--max-size 0` cleaning during them, finish with the outputs each gives alone; an entry in use is
never removed, and nobody waits forever."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import write_jsonl

from daar.utils.cache_size import clean, entries

EXAMPLES = {
    "numbers": [
        {"instruction": "What is 12 times 7?", "output": "84."},
        {"instruction": "Add 2 and 5.", "output": "7"},
    ],
    "words": [
        {"instruction": "Capital of France?", "output": "Paris."},
        {"instruction": "Spell cat.", "output": "c-a-t"},
    ],
}
OUTPUTS = ("selected.jsonl", "rejected.jsonl", "scores.parquet", "analysis.json", "fitted/daar.json")


def select(inputs: dict[str, Path], out: Path, cache: Path, seed: int) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "daar", "select", str(inputs["pool"]), "--out", str(out), "--model", str(inputs["model"]),
        "--domains", str(inputs["domains"]), "--examples-file", str(inputs["examples"]), "--device", "cpu",
        "--seed", str(seed), "--cache-dir", str(cache), "--no-report", "--set", "heads.epochs=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def test_two_runs_and_a_clean_up_during_them_give_what_each_gives_alone(tiny_model, real_rows, tmp_path):
    inputs = {"pool": write_jsonl(tmp_path / "pool.jsonl", real_rows[:80]), "model": tiny_model}
    inputs["domains"] = tmp_path / "domains.yaml"
    inputs["domains"].write_text(yaml.safe_dump([{"name": k, "description": f"{k} questions"} for k in EXAMPLES]))
    inputs["examples"] = tmp_path / "examples.yaml"
    inputs["examples"].write_text(yaml.safe_dump(EXAMPLES))
    alone = {seed: select(inputs, tmp_path / f"alone-{seed}", tmp_path / f"cache-{seed}", seed) for seed in (1, 2)}
    for seed, run in alone.items():  # each alone: in a cache of its own, no clean-up
        assert run.wait(timeout=600) == 0, run.stderr.read() if run.stderr else ""
        alone[seed] = outputs(tmp_path / f"alone-{seed}")
    assert alone[1]["selected.jsonl"] != alone[2]["selected.jsonl"]

    shared = tmp_path / "shared"
    runs = {seed: select(inputs, tmp_path / f"together-{seed}", shared, seed) for seed in (1, 2)}
    cleanups = removed = 0
    deadline = time.monotonic() + 600
    while any(r.poll() is None for r in runs.values()):
        assert time.monotonic() < deadline, "a run waited forever"
        if entries(shared):
            removed += len(clean(shared, 0)[0])  # what `daar cache --max-size 0` does, again and again
            cleanups += 1
        time.sleep(0.05)
    for seed, run in runs.items():
        assert run.returncode == 0, run.stderr.read() if run.stderr else ""
        assert outputs(tmp_path / f"together-{seed}") == alone[seed]
    assert cleanups > 3 and removed > 0  # the clean-ups ran during the runs and removed what was not in use


def test_an_entry_being_read_or_computed_is_never_removed(tmp_path):
    """A run holding an entry's lock (reading it, shared, or computing it) keeps it from `daar cache`."""
    stages = tmp_path / "stages"
    stages.mkdir()
    for name in ("probe-read", "probe-made", "probe-idle"):
        (stages / f"{name}.safetensors").write_bytes(b"x" * 100)
    hold = (
        "import sys, time\nfrom daar.utils.lock import file_lock\n"
        "with file_lock(sys.argv[1], 'test', shared=True), file_lock(sys.argv[2], 'test'):\n"
        "    print('held', flush=True)\n    time.sleep(120)"
    )
    args = [sys.executable, "-c", hold, str(stages / "probe-read.lock"), str(stages / "probe-made.lock")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        removed, kept = clean(tmp_path, 0)
        assert [e.name for e in removed] == ["probe-idle"]
        assert sorted(e.name for e in kept) == ["probe-made", "probe-read"]
    finally:
        holder.kill()
        holder.wait()
    removed, kept = clean(tmp_path, 0)  # a dead holder holds nothing
    assert sorted(e.name for e in removed) == ["probe-made", "probe-read"] and kept == []
    assert list(stages.iterdir()) == []  # the lock files go with their entries
