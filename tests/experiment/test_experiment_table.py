"""The results table built from hand-made cell JSONs: grouping, mean/std over seeds, base first, outputs."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from daar.experiment.runner import write_tables
from daar.experiment.table import aggregate, mix_markdown, to_csv, to_markdown

TASKS = ["nq", "gsm8k"]


def cell(method: str, ratio: float | None, seed: int | None, nq: float, gsm8k: float) -> dict:
    seconds = {"eval": 10.0} if ratio is None else {"select": 2.0, "tune": 30.0, "eval": 10.0}
    result = {
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "mode": "nll",
        "scores": {"nq": nq, "gsm8k": gsm8k},
        "average": (nq + gsm8k) / 2,
        "seconds": seconds,
    }
    if ratio is not None:
        result["selection"] = {"rows": 20}
    return result


@pytest.fixture
def cells() -> list[dict]:
    # the base cell deliberately not first: the table must still put it first
    return [
        cell("daar", 0.2, 1, 2.0, 1.0),
        cell("daar", 0.2, 2, 2.2, 1.4),
        cell("base", None, None, 3.0, 2.0),
        cell("random", 0.2, 1, 2.5, 1.5),
        cell("random", 0.2, 2, 2.5, 1.7),
        cell("random", 0.1, 1, 2.9, 1.9),
    ]


def test_aggregate_groups_over_seeds_with_base_first(cells: list[dict]) -> None:
    rows = aggregate(cells, TASKS)
    assert [(r.method, r.ratio) for r in rows] == [("base", None), ("daar", 0.2), ("random", 0.2), ("random", 0.1)]
    base, daar, random02, random01 = rows
    assert base.seeds == [] and base.std("nq") is None and base.mean("average") == 2.5
    assert daar.seeds == [1, 2]
    assert daar.mean("nq") == pytest.approx(2.1) and daar.std("nq") == pytest.approx(math.sqrt(0.02))
    assert daar.mean("average") == pytest.approx((1.5 + 1.8) / 2)
    assert random02.std("nq") == 0.0 and random01.std("nq") is None  # one seed: no spread
    assert daar.mean_seconds("tune") == 30.0 and base.mean_seconds("tune") is None


def test_markdown_states_metric_direction_and_marks_best(cells: list[dict]) -> None:
    rows = aggregate(cells, TASKS)
    text = to_markdown(rows, TASKS, {"nq": "nll", "gsm8k": "nll"}, "nll", ["Model tiny."])
    assert "negative log-likelihood" in text and "Lower is better" in text and "Model tiny." in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| Model | Ratio | Seeds | NQ | GSM8K | Average |"
    assert table[1].startswith("| base model | – | – | 3.0000 | 2.0000 | 2.5000 |")
    # lowest mean is best in nll mode: DaaR's 2.1 on NQ
    assert table[2] == "| daar | 0.2 | 1, 2 | **2.1000 ± 0.1414** | **1.2000 ± 0.2828** | **1.6500 ± 0.2121** |"
    assert table[4].startswith("| random | 0.1 | 1 | 2.9000 | 1.9000 |")
    assert "## Time per part" in text and "| daar | 0.2 | 2.0 | 30.0 | 10.0 | 42.0 |" in text


def test_markdown_in_generate_mode_shows_percent_and_higher_is_better() -> None:
    cells = [cell("base", None, None, 0.10, 0.02), cell("random", 0.2, 1, 0.12, 0.03)]
    text = to_markdown(aggregate(cells, TASKS), TASKS, {"nq": "exact_match", "gsm8k": "exact_match"}, "generate", [])
    assert "Metric (%): exact match. Higher is better." in text
    assert "| random | 0.2 | 1 | **12.0** | **3.0** | **7.5** |" in text


def test_csv_has_one_row_per_cell_base_first(cells: list[dict]) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(cells, TASKS))))
    assert len(rows) == len(cells)
    assert list(rows[0]) == [
        "method", "ratio", "seed", "draw", "selected_rows", "train_tokens", "heldout_macro", "nq", "gsm8k", "average",
        "select_seconds", "tune_seconds", "eval_seconds", "heldout_seconds",
    ]  # fmt: skip
    assert (rows[0]["method"], rows[0]["ratio"], rows[0]["seed"], rows[0]["tune_seconds"]) == ("base", "", "", "")
    assert (rows[1]["method"], rows[1]["seed"], rows[1]["nq"], rows[1]["average"]) == ("daar", "1", "2", "1.5")
    assert rows[1]["selected_rows"] == "20" and rows[1]["tune_seconds"] == "30"
    assert (rows[0]["draw"], rows[1]["draw"], rows[1]["heldout_macro"]) == ("", "1", "")


def test_write_tables_makes_all_three_files(cells: list[dict], tmp_path: Path) -> None:
    write_tables(cells, TASKS, "nll", tmp_path, [])
    assert (tmp_path / "results.csv").read_text().count("\n") == len(cells) + 1
    assert "| base model |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_domain_mix_table_averages_the_seeds(cells: list[dict]) -> None:
    assert mix_markdown(cells) == ""  # no labels, no table
    for seed_cell, coding in zip(cells[:2], (0.5, 0.7), strict=True):
        fractions = {"coding": coding, "mathematics": 1 - coding}
        seed_cell["selection"]["domain_mix"] = {"fractions": fractions, "normalized_entropy": 0.9}
    text = mix_markdown(cells)
    assert "| Method | Ratio | coding | mathematics | balance |" in text
    assert "| daar | 0.2 | 60.0 | 40.0 | 0.900 |" in text
