"""Cells in parallel processes leave the same files as cells run one after another.

One tiny experiment (the tiny random model, 40 real rows, 2 tuning steps, 2 items of 2 tasks) is
run twice into two folders: sequentially, and with `--parallel 3`. Its methods cover what the
parallel runner must get right: a cell that depends on another (random at DaaR's token count,
named random so that the comparisons with random are made too), the DaaR and stratified cells
sharing one feature cache at the same moment, and the base cell.
Every selection, adapter and per-item score must be byte-identical; only times may differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_DATA, write_jsonl
from typer.testing import CliRunner

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", SHARED_DATA / "bench"))
SEEDS_FILE = {
    "numbers": [
        {"instruction": "What is 12 times 7?", "output": "12 times 7 is 84."},
        {"instruction": "Solve for x: 3x + 5 = 20.", "output": "3x = 15, so x = 5."},
    ],
    "programs": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "Fix: print 'hi'", "output": "print('hi')"},
    ],
}
# what says when, how fast or where (the two runs have different folders), never what was computed
VARYING = {"seconds", "finished_at", "train_seconds", "tokens_per_second", "eval_report", "path", "stages"}
VARYING |= {"match_tokens"}


@pytest.fixture(scope="module")
def runs(tiny_model: Path, real_rows: list[dict], tmp_path_factory) -> dict[str, Path]:
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    folder = tmp_path_factory.mktemp("parallel")
    write_jsonl(folder / "pool.jsonl", real_rows[:60])
    (folder / "seeds.yaml").write_text(yaml.safe_dump(SEEDS_FILE), encoding="utf-8")
    config = {
        "pool": "pool.jsonl",
        "sample": 40,
        "model": str(tiny_model),
        "methods": ["daar", "stratified", {"name": "random", "method": "random", "match_tokens": "daar"}],
        "ratios": [0.25],
        "seeds": [1],
        "device": "cpu",
        "threads": 1,
        "select": {
            "examples_file": "seeds.yaml",
            "domains": [
                {"name": "numbers", "description": "arithmetic and algebra"},
                {"name": "programs", "description": "writing computer programs"},
            ],
            "heads": {"epochs": 1},
            "max_length": 128,
        },
        # max_length left at its default: the budget counts tokens as tuning with the defaults does
        "tune": {"max_steps": 2, "batch_size": 2, "grad_accum": 1},
        "eval": {"tasks": ["nq", "hellaswag"], "mode": "nll", "limit": 2, "data_dir": str(BENCH), "batch_size": 4},
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    from daar.cli import app

    found = {}
    for name, extra in (("sequential", []), ("parallel", ["--parallel", "3"])):
        out = folder / name
        result = CliRunner().invoke(app, ["experiment", str(path), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output + repr(result.exception)
        found[name] = out
    return found


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in VARYING}
    return value


def test_parallel_cells_write_the_same_files(runs: dict[str, Path]) -> None:
    seq, par = runs["sequential"], runs["parallel"]
    assert json.loads((par / "experiment.json").read_text())["parallel"] == 3
    cells = sorted(p.name for p in (seq / "cells").iterdir())
    assert cells == ["base", "daar-r0.25-s1", "random-r0.25-s1", "stratified-r0.25-s1"]
    for cell in cells:
        a, b = (json.loads((root / "cells" / cell / "cell.json").read_text()) for root in (seq, par))
        assert _without_timing(a) == _without_timing(b), cell
        for name in ("select/selected.jsonl", "select/scores.parquet", "tune/adapter_model.safetensors"):
            if (seq / "cells" / cell / name).exists():
                assert (seq / "cells" / cell / name).read_bytes() == (par / "cells" / cell / name).read_bytes(), name
        samples = "eval/eval.samples.jsonl"
        assert (seq / "cells" / cell / samples).read_bytes() == (par / "cells" / cell / samples).read_bytes()
    assert (seq / "results.csv").read_text().split("\n")[0] == (par / "results.csv").read_text().split("\n")[0]


def test_matched_cell_trains_on_no_more_tokens_than_its_source(runs: dict[str, Path]) -> None:
    cells = runs["parallel"] / "cells"
    source = json.loads((cells / "daar-r0.25-s1" / "cell.json").read_text())
    matched = json.loads((cells / "random-r0.25-s1" / "cell.json").read_text())
    budget = matched["selection"]["token_budget"]
    assert budget["budget"] == source["tune"]["tokens"]  # counted as tuning counts them
    assert budget["selected_tokens"] <= budget["budget"]
    assert matched["tune"]["tokens"] == budget["selected_tokens"]
    text = (runs["parallel"] / "results.md").read_text()
    assert "## Training tokens and agreement between seeds" in text
    assert "| daar | 0.25 | 1 | 10 | " in text and "| random | 0.25 | 1 | 12 | " in text  # rows, then tokens
    assert "## Against random, choice accuracy (points)" in text and "| stratified | 0.25 | 1 | " in text
