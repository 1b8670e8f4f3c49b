"""`run_select` end to end with a tiny real model: outputs, row accounting, caching, determinism."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_jsonl

from daar.config import SelectConfig
from daar.pipeline import run_select
from daar.read import read_pool
from daar.select.base import Context
from daar.select.daar import DaarSelector

DOMAINS = [
    {"name": "math", "description": "arithmetic and algebra word problems"},
    {"name": "code", "description": "writing and fixing Python programs"},
    {"name": "trivia", "description": "general knowledge about the world"},
]
SEEDS = {
    "math": [
        {"instruction": "What is 12 times 7?", "output": "12 times 7 is 84."},
        {"instruction": "Solve 3x + 5 = 20 for x.", "output": "x = 5"},
    ],
    "code": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "Fix this loop: for i in range(10) print(i)", "output": "for i in range(10):\n    print(i)"},
    ],
    "trivia": [
        {"instruction": "What is the capital of France?", "output": "Paris."},
        {"instruction": "Who wrote Hamlet?", "output": "William Shakespeare."},
    ],
}


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory, real_rows) -> Path:
    """200 real rows plus one row of each kind of bad input."""
    folder = tmp_path_factory.mktemp("pool")
    path = write_jsonl(folder / "pool.jsonl", real_rows[:200])
    with open(path, "ab") as handle:
        handle.write(b'{"id": "broken", "instruction": "no closing brace"\n')
        handle.write(json.dumps({"id": "no-output", "instruction": "Say hi"}).encode() + b"\n")
        handle.write(json.dumps(real_rows[0]).encode() + b"\n")  # duplicate id
        handle.write(b'{"id": "latin1", "instruction": "caf\xe9", "output": "x"}\n')
    return path


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seeds") / "seeds.yaml"
    path.write_text(yaml.safe_dump(SEEDS), encoding="utf-8")
    return path


def make_config(tiny_model: Path, examples_file: Path, **extra) -> SelectConfig:
    settings = dict(
        model=str(tiny_model),
        domains=DOMAINS,
        examples_file=str(examples_file),
        probe_size=120,
        ratio=0.2,
        device="cpu",
        heads={"epochs": 2, "batch_size": 16, "val_fraction": 0.1},
    )
    settings.update(extra)
    return SelectConfig.model_validate(settings)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_model, pool_file, examples_file):
    out = tmp_path_factory.mktemp("run")
    result = run_select(make_config(tiny_model, examples_file), pool_file, out, show_domain_field="domain")
    return result


def test_outputs_and_row_accounting(first_run, pool_file, real_rows):
    out, manifest = first_run.out_dir, first_run.manifest
    counts = manifest["counts"]
    assert counts == {
        "rows_in": 204,
        "selected": 40,
        "not_selected": 160,
        "rejected": 4,
        "sampled_out": 0,
        "scored": 200,
        "adds_up": True,
    }
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["position"] for r in rejected] == [200, 201, 202, 203]
    reasons = " | ".join(r["reason"] for r in rejected)
    assert "JSON" in reasons and "output" in reasons and "duplicate id" in reasons and "UTF-8" in reasons

    selected = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in real_rows[:200]}
    assert len(selected) == 40 and all(row == by_id[row["id"]] for row in selected)

    scores = pd.read_parquet(out / "scores.parquet")
    expected = {"position", "id", "score", "reward", "entropy", "pseudo_domain", "rank", "selected"}
    assert expected | {"prob_math", "prob_code", "prob_trivia"} <= set(scores.columns)
    assert len(scores) == 200 and scores["selected"].sum() == 40
    assert set(scores.loc[scores["selected"], "id"]) == {r["id"] for r in selected}
    # the default strategy: each pseudo-domain's share of the budget, its highest rewards first
    sizes = scores["pseudo_domain"].value_counts()
    for name, group in scores.groupby("pseudo_domain"):
        assert abs(group["selected"].sum() - 40 * sizes[name] / 200) < 1, name
        if group["selected"].any() and not group["selected"].all():
            assert group.loc[group["selected"], "score"].min() >= group.loc[~group["selected"], "score"].max()
    assert np.allclose(scores[["prob_math", "prob_code", "prob_trivia"]].sum(axis=1), 1.0, atol=1e-5)
    assert (scores["entropy"].between(0, np.log(3) + 1e-6)).all()


def test_manifest_records_the_method(first_run):
    manifest = first_run.manifest
    assert manifest["probe"]["pseudo_domain_sizes"].keys() == {"math", "code", "trivia"}
    assert sum(manifest["probe"]["pseudo_domain_sizes"].values()) == 120
    assert 0 <= manifest["probe"]["val_accuracy"] <= 1 and manifest["reward"]["val_mse"] >= 0
    assert manifest["ground_truth"]["selected"]["rows"] == 40
    assert {"features", "examples", "cluster", "probe", "reward", "score", "select"} <= manifest["stages"].keys()
    assert manifest["input"]["sha256"] and manifest["versions"]["torch"]
    assert json.loads((first_run.out_dir / "manifest.json").read_text())["counts"]["adds_up"] is True
    analysis = json.loads((first_run.out_dir / "analysis.json").read_text())
    assert analysis["pseudo_domain"]["selected"]["rows"] == 40
    assert analysis["ground_truth"]["mix"]["pool"]["rows"] == 200
    assert len(json.loads((first_run.out_dir / "map.json").read_text())["points"]) == 200


def test_new_ratio_reuses_every_fitted_stage(first_run, tiny_model, examples_file, pool_file):
    result = run_select(make_config(tiny_model, examples_file, ratio=0.1), pool_file, first_run.out_dir, report=False)
    stages = result.manifest["stages"]
    assert all(stages[name]["cached"] for name in ("features", "example_features", "cluster", "probe", "reward"))
    assert result.manifest["counts"]["selected"] == 20
    assert set(result.selected_ids) <= set(first_run.selected_ids)  # smaller shares of the same rankings


def test_resume_recomputes_only_the_unfinished_stage(first_run, tiny_model, examples_file, pool_file, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(first_run.out_dir, out)
    cache = tmp_path / "cache"
    shutil.copytree(os.environ["DAAR_CACHE_DIR"], cache)  # the shared cache the first run filled
    removed = list((cache / "stages").glob("reward-*"))
    assert removed
    for path in removed:
        path.unlink()  # as if the run was killed while training the reward model
    (out / "manifest.json").unlink()
    result = run_select(make_config(tiny_model, examples_file, cache_dir=str(cache)), pool_file, out, report=False)
    stages = result.manifest["stages"]
    assert stages["features"]["cached"] and stages["cluster"]["cached"] and stages["probe"]["cached"]
    assert not stages["reward"]["cached"]
    assert result.selected_ids == first_run.selected_ids


def test_same_seed_same_selection_other_seed_other_probe(first_run, tiny_model, examples_file, pool_file, tmp_path):
    again = run_select(make_config(tiny_model, examples_file), pool_file, tmp_path / "again", report=False)
    assert again.selected_ids == first_run.selected_ids
    a = pd.read_parquet(first_run.out_dir / "scores.parquet")
    b = pd.read_parquet(tmp_path / "again" / "scores.parquet")
    assert np.array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    other = run_select(make_config(tiny_model, examples_file, seed=7), pool_file, tmp_path / "other", report=False)
    assert other.selected_ids != first_run.selected_ids


def test_customized_takes_half_of_the_target_and_a_tenth_of_the_rest(first_run, tiny_model, examples_file, pool_file):
    groups = pd.read_parquet(first_run.out_dir / "scores.parquet")["pseudo_domain"].value_counts()
    paper = {name: size * (0.5 if name == "code" else 0.1) for name, size in groups.items()}
    # with the paper's own budget (its fractions summed), each group gets exactly its fraction
    budget = round(sum(paper.values()))
    config = make_config(tiny_model, examples_file, strategy="customized", target="code", count=budget)
    result = run_select(
        config, pool_file, first_run.out_dir / "custom", cache_dir=first_run.out_dir / "cache", report=False
    )
    scores = pd.read_parquet(first_run.out_dir / "custom" / "scores.parquet")
    for name, group in scores.groupby("pseudo_domain"):
        assert abs(group["selected"].sum() - paper[name]) < 1, name
        if group["selected"].any() and not group["selected"].all():
            assert group.loc[group["selected"], "score"].min() >= group.loc[~group["selected"], "score"].max()
    assert result.manifest["counts"]["adds_up"]
    # any other budget keeps the paper's proportions, scaled to n rows
    config = make_config(tiny_model, examples_file, strategy="customized", target="code", ratio=0.3)
    result = run_select(
        config, pool_file, first_run.out_dir / "custom30", cache_dir=first_run.out_dir / "cache", report=False
    )
    scores = pd.read_parquet(first_run.out_dir / "custom30" / "scores.parquet")
    n = result.manifest["counts"]["selected"]
    assert n == round(0.3 * len(scores))
    for name, group in scores.groupby("pseudo_domain"):
        assert abs(group["selected"].sum() - n * paper[name] / sum(paper.values())) < 1, name


def test_fitted_state_loads_and_scores_identically(first_run, tiny_model, examples_file, pool_file):
    loaded = DaarSelector.load(first_run.out_dir / "fitted")
    config = make_config(tiny_model, examples_file)
    ctx = Context(config, first_run.out_dir / "cache")
    loaded.check_context(ctx)
    pool = read_pool(pool_file)
    scores = loaded.score(pool, ctx)
    saved = pd.read_parquet(first_run.out_dir / "scores.parquet")
    assert np.array_equal(scores["score"], saved["score"].to_numpy())
    assert list(scores["pseudo_domain"]) == list(saved["pseudo_domain"])


def test_sample_counts_the_rows_left_out(tiny_model, examples_file, pool_file, tmp_path):
    result = run_select(make_config(tiny_model, examples_file, sample=100), pool_file, tmp_path / "s", report=False)
    counts = result.manifest["counts"]
    assert counts["scored"] == 100 and counts["sampled_out"] == 100 and counts["selected"] == 20
    assert counts["not_selected"] == 180 and counts["adds_up"]


def test_a_pool_without_usable_rows_stops_with_a_clear_error(tiny_model, examples_file, tmp_path):
    from daar.read import PoolError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "only"}\nnot json\n', encoding="utf-8")
    with pytest.raises(PoolError, match="bad.jsonl"):
        run_select(make_config(tiny_model, examples_file), bad, tmp_path / "out", report=False)
