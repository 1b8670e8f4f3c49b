"""Contrastive windows on a toy labelled set, and the `daar pools` / `daar analyze` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.analyze.commands import register
from daar.analyze.pools import contrastive_pool, diversity_ranks, parse_window
from daar.write.run import RunManifest

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _toy() -> tuple[np.ndarray, np.ndarray]:
    """Domain 0 near axis x, domain 1 near axis y; rows lean towards the other axis by known amounts."""
    lean = [0.0, 0.3, 0.6, 0.9]
    x0 = [[1.0, t, 0.0] for t in lean]  # more t = closer to domain 1 = more inter-diverse
    x1 = [[t, 1.0, 0.0] for t in lean]
    return np.array(x0 + x1), np.array([0] * 4 + [1] * 4)


def test_inter_ranks_put_the_most_between_rows_first():
    x, labels = _toy()
    ranks = diversity_ranks(x, labels, "inter")
    assert ranks.tolist() == [3, 2, 1, 0, 3, 2, 1, 0]
    high = contrastive_pool(x, labels, "inter", parse_window("0:2"))
    low = contrastive_pool(x, labels, "inter", parse_window("2:4"))
    assert high.tolist() == [2, 3, 6, 7]
    assert low.tolist() == [0, 1, 4, 5]


def test_intra_ranks_put_the_farthest_from_own_centre_first():
    x = np.array([[1, 0, 0], [1, 0.1, 0], [1, 0, 0.1], [1, 1, 1], [0, 0, 1], [0, 0, 2]], dtype=float)
    labels = np.array([0, 0, 0, 0, 1, 1])
    ranks = diversity_ranks(x, labels, "intra")
    assert ranks[3] == 0  # the outlier of domain 0
    assert ranks[4] in (0, 1) and ranks[5] in (0, 1)  # tie broken by row order
    assert sorted(ranks[:4].tolist()) == [0, 1, 2, 3]


def test_fractional_window_per_domain_size():
    x, labels = _toy()
    chosen = contrastive_pool(x, labels, "inter", parse_window("0.5:1.0"))
    assert chosen.tolist() == [0, 1, 4, 5]
    assert contrastive_pool(x, labels, "inter", parse_window("0:100")).tolist() == list(range(8))


@pytest.mark.parametrize("text", ["5", "3:1", "a:b", "0:1.5", "-1:2", "0.2:0.2", "1.5:3"])
def test_bad_windows_are_refused(text):
    with pytest.raises(ValueError):
        parse_window(text)


def test_window_forms():
    assert parse_window("0:2000").bounds(10_000) == (0, 2000)
    assert parse_window("80%:100%").bounds(10) == (8, 10)
    assert parse_window("0.8:1.0").fractional


@pytest.fixture()
def pool_file(tmp_path, real_rows) -> Path:
    rows = [dict(r) for r in real_rows[:120]]
    del rows[5]["domain"]  # unlabelled: rejected by `pools`
    path = write_jsonl(tmp_path / "pool.jsonl", rows)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")  # unreadable: rejected by the reader
    return path


def _model_args(tiny_model, tmp_path) -> list[str]:
    return ["--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]


def test_pools_command_writes_a_window_per_domain(pool_file, tiny_model, tmp_path, real_rows):
    out = tmp_path / "high"
    args = [
        "pools",
        str(pool_file),
        "--labels",
        "domain",
        "--by",
        "inter",
        "--window",
        "0:10",
        "--out",
        str(out),
    ]
    result = runner.invoke(_app(), args + _model_args(tiny_model, tmp_path))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    RunManifest.model_validate(manifest)  # the one schema every run folder's manifest has
    assert (manifest["command"], manifest["config"]["by"]) == ("pools", "inter")
    assert manifest["domains"] == sorted(manifest["per_domain"])
    counts = manifest["counts"]
    assert counts["rows_in"] == 121
    assert counts["rejected"] == 2
    assert counts["selected"] + counts["not_selected"] + counts["rejected"] == counts["rows_in"]
    assert counts["selected"] == 10 * len(manifest["per_domain"])
    selected = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    originals = {r["id"]: r for r in real_rows[:120]}
    assert all(row == originals[row["id"]] for row in selected)  # rows unchanged
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert {r["position"] for r in rejected} == {5, 120}
    assert any("domain" in r["reason"] for r in rejected)
    scores = pd.read_parquet(out / "scores.parquet")
    assert int(scores["selected"].sum()) == counts["selected"]
    assert set(scores.loc[scores["selected"], "rank"]) <= set(range(10))


def test_pools_command_clear_errors(pool_file, tiny_model, tmp_path):
    base = ["pools", str(pool_file), "--by", "inter", "--out", str(tmp_path / "x")]
    bad_window = runner.invoke(_app(), base + ["--window", "9:3"] + _model_args(tiny_model, tmp_path))
    assert bad_window.exit_code == 2 and "window" in bad_window.output
    bad_field = runner.invoke(
        _app(), base + ["--window", "0:5", "--labels", "nope"] + _model_args(tiny_model, tmp_path)
    )
    assert bad_field.exit_code == 2 and "unknown label field 'nope'" in bad_field.output
    missing = runner.invoke(
        _app(),
        [
            "pools",
            str(tmp_path / "absent.jsonl"),
            "--by",
            "intra",
            "--window",
            "0:5",
            "--out",
            str(tmp_path / "y"),
        ],
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_model = runner.invoke(_app(), base + ["--window", "0:5", "--model", str(tmp_path)])
    assert bad_model.exit_code == 2 and "config.json" in bad_model.output
    for result in (bad_window, bad_field, missing, bad_model):
        assert "Traceback" not in result.output


def test_analyze_selection_against_pool(pool_file, tiny_model, tmp_path, real_rows):
    selection = write_jsonl(tmp_path / "selected.jsonl", [r for r in real_rows[:120] if r["domain"] == "coding"][:7])
    out = tmp_path / "analysis.json"
    args = ["analyze", str(selection), "--labels", "domain", "--pool", str(pool_file), "--out", str(out)]
    result = runner.invoke(_app(), args + _model_args(tiny_model, tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["mix"]["counts"]["coding"] == 7
    assert report["mix"]["entropy"] == pytest.approx(0.0)
    assert report["kept_per_domain"]["coding"]["kept"] == 7
    assert report["pool"]["mix"]["rows"] == 119  # the unlabelled row is left out
    assert 0 < report["pool"]["diversity"]["inter_diversity"] < 2
    assert "coding" in result.output


def test_analyze_with_run_pseudo_domains(pool_file, tiny_model, tmp_path, real_rows):
    run = tmp_path / "run"
    run.mkdir()
    ids = [r["id"] for r in real_rows[:120]]
    pd.DataFrame(
        {
            "position": range(len(ids)),
            "id": ids,
            "score": np.linspace(0, 1, len(ids)),
            "pseudo_domain": [f"p{i % 3}" for i in range(len(ids))],
            "selected": [i < 20 for i in range(len(ids))],
        }
    ).to_parquet(run / "scores.parquet")
    result = runner.invoke(_app(), ["analyze", str(pool_file), "--run", str(run)] + _model_args(tiny_model, tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads((run / "analysis.json").read_text())
    assert report["diversity"]["domains"] == ["p0", "p1", "p2"]
    assert report["rows"] == 120
    no_labels = runner.invoke(_app(), ["analyze", str(pool_file)] + _model_args(tiny_model, tmp_path))
    assert no_labels.exit_code == 2 and "--labels" in no_labels.output
