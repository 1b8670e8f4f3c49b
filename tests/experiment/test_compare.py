"""The paired bootstrap against the baseline, on per-item scores written the way `daar eval` writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from daar.experiment.compare import comparison_markdown, comparisons

TASKS = ["gsm8k", "nq"]


def _cell(folder: Path, method: str, seed: int, shift: float, rng: np.random.Generator) -> dict:
    """A cell whose per-item NLL is the shared item difficulty plus `shift` plus a little noise."""
    folder.mkdir(parents=True)
    rows = []
    for task in TASKS:
        for i in range(150):
            tokens = 10 + i % 7
            nll_per_token = 1.0 + (i % 13) / 10 + shift + rng.normal(0, 0.02)
            rows.append({"task": task, "id": f"{task}/{i}", "nll": [-nll_per_token * tokens, tokens]})
    (folder / "eval.samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "method": method,
        "ratio": 0.2,
        "seed": seed,
        "metrics": {t: "nll" for t in TASKS},
        "eval_report": str(folder / "eval.json"),
    }


def test_a_real_shift_is_resolved_and_noise_is_not(tmp_path):
    rng = np.random.default_rng(0)
    cells = []
    for seed in (1, 2, 3):
        cells.append(_cell(tmp_path / f"random-{seed}", "random", seed, 0.0, rng))
        cells.append(_cell(tmp_path / f"better-{seed}", "better", seed, -0.05, rng))
        cells.append(_cell(tmp_path / f"same-{seed}", "same", seed, 0.0, rng))
    cells.append({"method": "base", "ratio": None, "seed": None, "metrics": {}})
    found = {row["method"]: row for row in comparisons(cells, TASKS)}
    assert set(found) == {"better", "same"}
    better, same = found["better"], found["same"]
    assert better["average"]["difference"] == np.float64(better["average"]["difference"])
    assert -0.06 < better["average"]["difference"] < -0.04
    assert better["average"]["high"] < 0 and better["average"]["resolved"] == 1.0
    assert same["average"]["low"] < 0 < same["average"]["high"] and same["average"]["resolved"] == 0.0
    assert same["average"]["seeds"] == 3
    text = comparison_markdown(list(found.values()), TASKS, "nll", {"gsm8k": "GSM8K", "nq": "NQ", "average": "Average"})
    assert "| better | 0.2 | 3 |" in text and " R |" in text


def test_cells_scored_on_other_items_are_refused(tmp_path):
    import pytest

    rng = np.random.default_rng(1)
    a = _cell(tmp_path / "a", "random", 1, 0.0, rng)
    b = _cell(tmp_path / "b", "daar", 1, 0.0, rng)
    path = Path(b["eval_report"]).with_name("eval.samples.jsonl")
    path.write_text(path.read_text().replace('"gsm8k/0"', '"gsm8k/999"'))
    with pytest.raises(ValueError, match="different items"):
        comparisons([a, b], TASKS)
