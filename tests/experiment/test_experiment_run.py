"""`daar experiment` end to end on the tiny random model and 40 real pool rows: every part runs for real.

Grid: [random, instruction_length, daar] x ratio 0.25 x seeds [1, 2] + the base model; tuning stops
after 2 steps and scoring reads 2 items of 2 tasks in nll mode. A tiny random model cannot write
domain seeds, so DaaR gets two custom domains with seed rows from a file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_DATA, write_jsonl
from typer.testing import CliRunner

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", SHARED_DATA / "bench"))
METHODS = ["random", "instruction_length", "daar"]
SEEDS_FILE = {
    "numbers": [
        {"instruction": "What is 12 times 7?", "output": "12 times 7 is 84."},
        {"instruction": "Solve for x: 3x + 5 = 20.", "output": "3x = 15, so x = 5."},
        {"instruction": "What is the sum of the angles of a triangle?", "output": "180 degrees."},
    ],
    "programs": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "What does a for loop do in Python?", "output": "It repeats a block for each item."},
        {"instruction": "Fix: print 'hi'", "output": "print('hi')"},
    ],
}


@pytest.fixture(scope="module")
def experiment(tiny_model: Path, real_rows: list[dict], tmp_path_factory) -> dict:
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    folder = tmp_path_factory.mktemp("experiment")
    write_jsonl(folder / "pool.jsonl", real_rows[:60])
    (folder / "seeds.yaml").write_text(yaml.safe_dump(SEEDS_FILE), encoding="utf-8")
    config = {
        "pool": "pool.jsonl",
        "sample": 40,
        "model": str(tiny_model),
        "methods": METHODS,
        "ratios": [0.25],
        "seeds": [1, 2],
        "device": "cpu",
        "domain_field": "domain",
        "threads": 1,  # the test machine's 2 cores are shared; spinning torch threads slow LoRA ~10x there
        "select": {
            "examples_file": "seeds.yaml",
            "domains": [
                {"name": "numbers", "description": "arithmetic and algebra"},
                {"name": "programs", "description": "writing computer programs"},
            ],
            "heads": {"epochs": 1},
            "max_length": 128,
        },
        "tune": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256},
        "eval": {"tasks": ["nq", "gsm8k"], "mode": "nll", "limit": 2, "data_dir": str(BENCH), "batch_size": 4},
        "out": "out",
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    from daar.cli import app

    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"path": path, "out": folder / "out", "output": result.output}


def test_outputs_hold_every_cell(experiment: dict) -> None:
    out = experiment["out"]
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert [(r["method"], r["seed"]) for r in rows] == [("base", "")] + [(m, s) for m in METHODS for s in ("1", "2")]
    for row in rows[1:]:
        assert row["ratio"] == "0.25" and row["selected_rows"] == "10"  # 25% of the 40-row sample
        assert float(row["tune_seconds"]) > 0 and float(row["select_seconds"]) > 0
    for row in rows:
        # a random model over a 49k vocabulary: about log(49152) = 10.8 nats per token
        assert 5 < float(row["nq"]) < 20 and 5 < float(row["gsm8k"]) < 20
        assert float(row["average"]) == pytest.approx((float(row["nq"]) + float(row["gsm8k"])) / 2, rel=1e-5)

    markdown = (out / "results.md").read_text(encoding="utf-8")
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0] == "| Model | Ratio | Seeds | NQ | GSM8K | Average |"
    assert table[1].startswith("| base model |")
    assert [line.split(" | ")[0] for line in table[2 : 2 + len(METHODS)]] == [f"| {m}" for m in METHODS]
    assert "Lower is better" in markdown and " ± " in table[2]
    assert "## Domain mix of the selections" in markdown
    assert (out / "results.png").stat().st_size > 10_000

    manifest = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "finished" and len(manifest["cells_computed"]) == 7
    assert manifest["machine"]["cpu_count"] >= 1 and manifest["versions"]["torch"]
    assert manifest["config"]["methods"] == METHODS and manifest["pool"]["rows"] == 40
    assert set(manifest["part_seconds"]) >= {"select", "tune", "eval"}
    assert "[7/7] daar-r0.25-s2" in experiment["output"]


def test_every_method_sees_the_same_sampled_pool(experiment: dict) -> None:
    out = experiment["out"]
    pool_ids = [json.loads(line)["id"] for line in (out / "pool.jsonl").read_text().splitlines()]
    assert len(pool_ids) == 40 and len(set(pool_ids)) == 40
    for method in METHODS:
        cell = json.loads((out / "cells" / f"{method}-r0.25-s1" / "cell.json").read_text())
        chosen = [json.loads(line)["id"] for line in Path(cell["selection"]["path"]).read_text().splitlines()]
        assert len(chosen) == 10 and set(chosen) <= set(pool_ids)
    picked = {}
    for seed in (1, 2):
        cell = json.loads((out / "cells" / f"random-r0.25-s{seed}" / "cell.json").read_text())
        picked[seed] = Path(cell["selection"]["path"]).read_text()
    assert picked[1] != picked[2]  # the cell seed reaches the selector


def test_rerun_recomputes_nothing(experiment: dict) -> None:
    from daar.cli import app

    cells = sorted((experiment["out"] / "cells").glob("*/cell.json"))
    assert len(cells) == 7
    before = {path: os.stat(path).st_mtime_ns for path in cells}
    result = CliRunner().invoke(app, ["experiment", str(experiment["path"])])
    assert result.exit_code == 0, result.output
    assert result.output.count(": cached") == 7 and "0 cell(s) computed" in result.output
    assert {path: os.stat(path).st_mtime_ns for path in cells} == before
    manifest = json.loads((experiment["out"] / "experiment.json").read_text(encoding="utf-8"))
    assert manifest["cells_computed"] == []
    rows = list(csv.DictReader((experiment["out"] / "results.csv").open(encoding="utf-8")))
    assert len(rows) == 7


def test_interrupted_cell_is_recomputed_alone(experiment: dict) -> None:
    from daar.cli import app

    (experiment["out"] / "cells" / "random-r0.25-s2" / "cell.json").unlink()  # as if killed during its eval
    result = CliRunner().invoke(app, ["experiment", str(experiment["path"]), "--dry-run"])
    assert result.exit_code == 0 and "to run" in result.output
    result = CliRunner().invoke(app, ["experiment", str(experiment["path"])])
    assert result.exit_code == 0, result.output
    manifest = json.loads((experiment["out"] / "experiment.json").read_text(encoding="utf-8"))
    assert manifest["cells_computed"] == ["random-r0.25-s2"]
    cell = json.loads((experiment["out"] / "cells" / "random-r0.25-s2" / "cell.json").read_text())
    assert cell["parts_cached"]["tune"] is True  # the adapter of the killed run was reused, not retrained
    assert cell["seconds"]["tune"] == cell["tune"]["train_seconds"]  # its time is the training's, not the reuse's
