"""`coevolve` as a method of `daar experiment`: the same total budget and the same tuning and
evaluation as the other methods, compared with random in the same table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_DATA, write_jsonl
from test_coevolve import DOMAINS, SEEDS
from typer.testing import CliRunner

from daar.cli import app

BENCH = SHARED_DATA / "bench"


def test_coevolve_cells_take_the_same_budget_and_are_compared(tiny_model: Path, real_rows, tmp_path) -> None:
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    write_jsonl(tmp_path / "pool.jsonl", real_rows[:60])
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(SEEDS), encoding="utf-8")
    config = {
        "pool": "pool.jsonl",
        "sample": 40,
        "model": str(tiny_model),
        "methods": ["random", {"name": "coevolve2", "method": "coevolve", "coevolve": {"rounds": 2}}],
        "ratios": [0.25],
        "seeds": [1],
        "device": "cpu",
        "threads": 1,
        "select": {"examples_file": "seeds.yaml", "domains": DOMAINS, "heads": {"epochs": 1}, "max_length": 128},
        "tune": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256},
        "eval": {"tasks": ["nq", "gsm8k"], "mode": "nll", "limit": 2, "data_dir": str(BENCH), "batch_size": 4},
        "out": "out",
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 0, result.output + repr(result.exception)

    out = tmp_path / "out"
    rows = {r["method"]: r for r in csv.DictReader((out / "results.csv").open(encoding="utf-8"))}
    assert rows["coevolve2"]["selected_rows"] == rows["random"]["selected_rows"] == "10"
    select_dir = out / "cells" / "coevolve2-r0.25-s1" / "select"
    per_round = [len(json.loads((select_dir / f"round-0{r}" / "picks.json").read_text())["ids"]) for r in (1, 2)]
    assert per_round == [5, 5]
    assert not (select_dir / "round-01" / "eval").exists()  # the cell evaluates the final selection only
    compared = json.loads((out / "comparison.json").read_text())
    assert [c["method"] for c in compared["bootstrap"]] == ["coevolve2"]
    assert [m["method"] for m in compared["benchmarks"][0]["methods"]] == ["coevolve2"]
    assert "coevolve2" in (out / "results.md").read_text()


def test_coevolve_settings_outside_a_coevolve_method_are_refused(tmp_path) -> None:
    from daar.experiment.config import MethodSpec

    with pytest.raises(ValueError, match="belong to method 'coevolve'"):
        MethodSpec(name="d", method="daar", coevolve={"rounds": 2})
    with pytest.raises(ValueError, match="per_round"):
        MethodSpec(name="c", method="coevolve", coevolve={"per_round": 2})
