"""The second evidence study's parts end to end on the tiny model: held-out NLL grouped by a field,
random drawn twice per tuning seed, and DaaR with sub-cluster quotas.

Grid: [random x 2 draws, daar-sub] x ratio 0.25 x seeds [1, 2] + the base model, 60 real pool rows
of which 40 are the sample; 2 held-out rows per source among the other 20.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_jsonl
from test_experiment_run import BENCH, SEEDS_FILE
from typer.testing import CliRunner

from daar.experiment.heldout import SAMPLES_FILE, summarize


@pytest.fixture(scope="module")
def study(tiny_model: Path, real_rows: list[dict], tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("study")
    write_jsonl(folder / "pool.jsonl", real_rows[:60])
    (folder / "examples.yaml").write_text(yaml.safe_dump(SEEDS_FILE), encoding="utf-8")
    config = {
        "pool": "pool.jsonl",
        "sample": 40,
        "model": str(tiny_model),
        "methods": [
            {"name": "random", "method": "random", "draws": 2},
            {"name": "daar-sub", "method": "daar", "select": {"subclusters": 2}},
        ],
        "ratios": [0.25],
        "seeds": [1, 2],
        "device": "cpu",
        "threads": 1,
        "heldout": {"field": "source", "rows_per_group": 2},
        "select": {
            "examples_file": "examples.yaml",
            "domains": [
                {"name": "numbers", "description": "arithmetic and algebra"},
                {"name": "programs", "description": "writing computer programs"},
            ],
            "heads": {"epochs": 1},
            "max_length": 128,
        },
        "tune": {"max_steps": 2, "lr": 0.001, "warmup_ratio": 0, "batch_size": 2, "grad_accum": 1, "max_length": 256},
        "eval": {"tasks": ["nq"], "mode": "nll", "limit": 2, "data_dir": str(BENCH), "batch_size": 4},
        "out": "out",
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    from daar.cli import app

    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"out": folder / "out", "rows": real_rows[:60]}


def _cell(out: Path, name: str) -> dict:
    return json.loads((out / "cells" / name / "cell.json").read_text())


def test_heldout_rows_lie_outside_the_sample_and_cover_every_group(study: dict) -> None:
    out = study["out"]
    sample = {json.loads(line)["id"] for line in (out / "pool.jsonl").read_text().splitlines()}
    held = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    outside = [r for r in study["rows"] if r["id"] not in sample]
    assert held and not {h["row"]["id"] for h in held} & sample
    for source in {r["source"] for r in outside}:
        rows = [h for h in held if h["group"] == source]
        assert len(rows) == min(2, sum(r["source"] == source for r in outside))
        assert all(h["row"]["source"] == source for h in rows)


def test_every_cell_scores_the_same_heldout_rows_and_its_summary_is_recomputable(study: dict) -> None:
    out = study["out"]
    names = ["base", "random-r0.25-s1", "random-r0.25-s1-d2", "daar-sub-r0.25-s2"]
    ids = None
    for name in names:
        cell = _cell(out, name)
        samples = [json.loads(line) for line in Path(cell["heldout"]["samples"]).read_text().splitlines()]
        assert ids is None or [s["id"] for s in samples] == ids
        ids = [s["id"] for s in samples]
        assert all(s["nll"][1] > 0 and s["nll"][0] > 0 for s in samples)
        again = summarize(samples)
        assert again["macro"] == pytest.approx(cell["heldout"]["macro"])
        assert again["macro"] == pytest.approx(np.mean(list(again["groups"].values())))
    assert (out / "cells" / "base" / "eval" / SAMPLES_FILE).is_file()
    tuned, base = _cell(out, "random-r0.25-s1")["heldout"]["macro"], _cell(out, "base")["heldout"]["macro"]
    assert tuned != base  # two steps of LoRA moved the model


def test_a_second_draw_selects_with_its_own_seed_and_tunes_with_the_same(study: dict) -> None:
    out = study["out"]
    first, second = _cell(out, "random-r0.25-s1"), _cell(out, "random-r0.25-s1-d2")
    assert (first["seed"], first["draw"], second["seed"], second["draw"]) == (1, 1, 1, 2)
    assert first["selection"]["ids"] != second["selection"]["ids"]
    manifest = json.loads((out / "cells" / "random-r0.25-s1-d2" / "select" / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 20_001


def test_subcluster_quotas_are_in_the_scores_and_fitted_state(study: dict) -> None:
    import pandas as pd

    run = out = study["out"] / "cells" / "daar-sub-r0.25-s1" / "select"
    scores = pd.read_parquet(run / "scores.parquet")
    scored = scores[scores["in_sample"]]
    assert set(scored["subcluster"].dropna().astype(int)) <= {0, 1}
    assert int(scored["selected"].sum()) == 10
    from daar.select.base import load_selector

    fitted = load_selector(out / "fitted")
    assert fitted.sub_centers is not None and fitted.sub_centers.shape[:2] == (2, 2)


def test_packed_cells_rebuild_the_same_comparisons(study: dict, tmp_path: Path) -> None:
    """What docs/experiment_*/ keeps is enough to recompute every number of the run's tables."""
    from daar.experiment import archive
    from daar.experiment.runner import write_tables

    packed = tmp_path / "packed"
    names = archive.pack(study["out"], packed)
    assert "random-r0.25-s2-d2" in names and "base" in names
    assert all(not p.name.endswith(".jsonl") for p in (packed / "items").rglob("*"))  # only compressed items
    cells = archive.load(packed, tmp_path / "scratch")
    write_tables(cells, ["nq"], "nll", tmp_path / "rebuilt", [])
    again = json.loads((tmp_path / "rebuilt" / "comparison.json").read_text())
    original = json.loads((study["out"] / "comparison.json").read_text())
    assert again == original
    fields = archive.sample_fields(packed)
    assert len(fields) == 40 and {"domain", "source"} <= set(next(iter(fields.values())))
