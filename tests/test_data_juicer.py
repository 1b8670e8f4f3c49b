"""DaaR as a Data-Juicer operator (daar.juicer): a recipe with `daar_selector`, run end to end by
Data-Juicer's own `dj-process`, keeps the rows `daar select` keeps with the same settings.

The operator comes with `pip install daar[dj]` (`make test` installs it), so this test is not
skipped when Data-Juicer is missing: it fails and says how to install it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.cli import app

EXAMPLES = {
    "common_sense": [
        {"instruction": "Why do people carry umbrellas?", "output": "To stay dry when it rains."},
        {"instruction": "What do you wear when it is cold?", "output": "A warm coat."},
    ],
    "reasoning": [
        {"instruction": "All cats are animals. Tom is a cat. Is Tom an animal?", "output": "Yes."},
        {"instruction": "A is taller than B, B taller than C. Who is shortest?", "output": "C."},
    ],
    "mathematics": [
        {"instruction": "What is 12 times 7?", "output": "84."},
        {"instruction": "Solve 3x + 5 = 20.", "output": "x = 5"},
    ],
    "coding": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "Fix: for i in range(3) print(i)", "output": "for i in range(3):\n    print(i)"},
    ],
}
SETTINGS = {"probe_size": 200, "ratio": 0.2, "strategy": "balanced", "seed": 42, "device": "cpu"}


def _dj_process() -> Path:
    script = Path(sys.executable).parent / "dj-process"
    where = f"Data-Juicer is not installed beside {sys.executable}: pip install -e '.[dj]' (make test does)"
    assert script.is_file(), where
    return script


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_a_recipe_with_daar_selector_keeps_what_daar_select_keeps(tmp_path, tiny_model, real_rows):
    rows = real_rows[:300]  # the shared pool's first 300 rows
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    examples = tmp_path / "examples.yaml"
    examples.write_text(yaml.safe_dump(EXAMPLES), encoding="utf-8")

    # daar select, with a cache of its own: the recipe below computes everything again
    args = ["select", str(pool), "--out", str(tmp_path / "select"), "--model", str(tiny_model)]
    args += ["--examples-file", str(examples), "--cache-dir", str(tmp_path / "cache-select"), "--no-report"]
    args += [f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items()]
    result = CliRunner().invoke(app, args + ["--set", "heads.epochs=2"])
    assert result.exit_code == 0, result.output
    expected = _ids(tmp_path / "select" / "selected.jsonl")
    assert len(expected) == 60

    recipe = {
        "project_name": "daar-test",
        "dataset_path": str(pool),
        "export_path": str(tmp_path / "dj" / "selected.jsonl"),
        "np": 1,
        "text_keys": "instruction",
        "process": [
            {
                "daar_selector": {
                    "model": str(tiny_model),
                    "examples_file": str(examples),
                    "settings": {"heads.epochs": 2},
                    "cache_dir": str(tmp_path / "cache-dj"),
                    "run_dir": str(tmp_path / "dj-run"),
                    **SETTINGS,
                }
            }
        ],
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets")}
    done = subprocess.run(
        [str(_dj_process()), "--config", str(tmp_path / "recipe.yaml")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exported = tmp_path / "dj" / "selected.jsonl"
    assert _ids(exported) == expected
    # Data-Juicer's rows are the pool's rows, every column as it was
    by_id = {r["id"]: r for r in rows}
    for line in exported.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        assert row == by_id[row["id"]]
    manifest = json.loads((tmp_path / "dj-run" / "manifest.json").read_text())
    assert manifest["counts"]["rows_in"] == 300 and manifest["counts"]["selected"] == 60
    assert manifest["config"]["probe_size"] == 200 and manifest["config"]["heads"]["epochs"] == 2
    assert manifest["stages"]["features"]["cached"] is False  # the method ran inside the recipe
