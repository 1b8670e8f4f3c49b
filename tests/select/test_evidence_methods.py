"""The methods that take DaaR apart: stratified quotas, token budgets, ensembles, the length adjustment.

Each runs end to end through `run_select` with the tiny random model and 200 real pool rows, and
is checked on the files it writes: scores.parquet, selected.jsonl, the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_jsonl

from daar.config import SelectConfig
from daar.pipeline import run_select
from daar.read import read_pool
from daar.select import strategies
from daar.select.members import fit_length_lines, member_seeds
from daar.select.stratified import row_uniform
from daar.tune.tokens import TokenCounter
from daar.write import account

DOMAINS = [
    {"name": "math", "description": "arithmetic and algebra word problems"},
    {"name": "code", "description": "writing and fixing Python programs"},
    {"name": "trivia", "description": "general knowledge about the world"},
]
SEEDS = {
    "math": [{"instruction": "What is 12 times 7?", "output": "84."}, {"instruction": "Solve 3x = 9.", "output": "3"}],
    "code": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "Fix: for i in range(3) print(i)", "output": "for i in range(3):\n    print(i)"},
    ],
    "trivia": [
        {"instruction": "What is the capital of France?", "output": "Paris."},
        {"instruction": "Who wrote Hamlet?", "output": "William Shakespeare."},
    ],
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, real_rows, tiny_model) -> dict:
    folder = tmp_path_factory.mktemp("evidence")
    pool = write_jsonl(folder / "pool.jsonl", real_rows[:200])
    seeds = folder / "seeds.yaml"
    seeds.write_text(yaml.safe_dump(SEEDS), encoding="utf-8")
    return {"pool": pool, "seeds": seeds, "model": tiny_model, "cache": folder / "cache", "folder": folder}


def run(setup: dict, name: str, **settings):
    config = SelectConfig.model_validate(
        dict(
            model=str(setup["model"]),
            domains=DOMAINS,
            examples_file=str(setup["seeds"]),
            ratio=0.2,
            device="cpu",
            heads={"epochs": 2, "batch_size": 16, "val_fraction": 0.1},
        )
        | settings
    )
    out = setup["folder"] / name
    result = run_select(config, setup["pool"], out, cache_dir=setup["cache"], report=False)
    return result, pd.read_parquet(out / "scores.parquet")


def test_stratified_meets_the_balanced_quotas_with_random_rows_inside(setup: dict) -> None:
    daar, daar_scores = run(setup, "daar")
    _, scores = run(setup, "stratified", method="stratified")
    names = [d["name"] for d in DOMAINS]
    group = scores["pseudo_domain"].to_numpy(dtype=object)
    assert (group == daar_scores["pseudo_domain"].to_numpy(dtype=object)).all()  # DaaR's own probe, same seed
    sizes = strategies.group_sizes(group, names)
    quota = strategies.allocate(sizes, sizes.astype(float), 40)
    chosen = scores["selected"].to_numpy()
    assert [int((group[chosen] == name).sum()) for name in names] == quota.tolist()  # exactly DaaR's quotas
    # inside each pseudo-domain the kept rows are the highest of a per-row uniform draw, not the reward
    draw = row_uniform(42, scores["position"].to_numpy())
    assert np.allclose(scores["score"].to_numpy(), draw)
    for name in names:
        members = group == name
        kept, left = draw[members & chosen], draw[members & ~chosen]
        if len(kept) and len(left):
            assert kept.min() > left.max()
    assert "reward" not in scores.columns
    assert set(np.flatnonzero(chosen)) != set(np.flatnonzero(daar_scores["selected"].to_numpy()))
    # another seed draws other rows inside the same kind of quotas
    _, other = run(setup, "stratified-7", method="stratified", seed=7)
    assert set(np.flatnonzero(other["selected"].to_numpy())) != set(np.flatnonzero(chosen))


def test_row_uniform_is_a_function_of_seed_and_position() -> None:
    positions = np.arange(10_000)
    first = row_uniform(3, positions)
    assert np.array_equal(first[5000:], row_uniform(3, positions[5000:]))  # block by block: the same numbers
    assert 0 <= first.min() and first.max() < 1 and abs(first.mean() - 0.5) < 0.01
    assert not np.array_equal(first, row_uniform(4, positions))


@pytest.mark.parametrize("method", ["random", "daar"])
def test_token_budget_is_exact_to_the_row_and_accounted(setup: dict, method: str) -> None:
    budget = 5000
    result, scores = run(setup, f"budget-{method}", method=method, budget_tokens=budget)
    out = result.out_dir
    counter = TokenCounter(Path(setup["model"]), False)
    selected = read_pool(out / "selected.jsonl").records
    used = int(counter(selected).sum())
    assert used <= budget
    assert result.manifest["token_budget"] == {"budget": budget, "selected_tokens": used, "rows": len(selected)}
    assert int(scores.loc[scores["selected"], "tokens"].sum()) == used  # every row's tokens in scores.parquet
    # one more row in the method's own order would not fit
    order = np.lexsort((np.arange(len(scores)), -scores["score"].to_numpy()))
    if method == "random":
        nxt = order[len(selected)]
        assert used + int(scores["tokens"].iloc[nxt]) > budget
    counts = account(out, 200)
    assert counts["selected"] == len(selected) and counts["selected"] + counts["not_selected"] == 200


def test_match_tokens_reads_the_other_runs_selection(setup: dict) -> None:
    source, _ = run(setup, "source")
    counter = TokenCounter(Path(setup["model"]), False)
    want = int(counter(read_pool(source.out_dir / "selected.jsonl").records).sum())
    matched, _ = run(setup, "matched", method="random", match_tokens=str(source.out_dir))
    assert matched.manifest["token_budget"]["budget"] == want
    assert matched.manifest["token_budget"]["selected_tokens"] <= want
    with pytest.raises(ValueError, match="either budget_tokens or match_tokens"):
        SelectConfig(budget_tokens=10, match_tokens=Path("x"))


def test_ensemble_is_deterministic_and_its_members_differ(setup: dict) -> None:
    first, scores = run(setup, "ens-a", ensemble=3)
    again, same = run(setup, "ens-b", ensemble=3)
    assert (first.out_dir / "selected.jsonl").read_bytes() == (again.out_dir / "selected.jsonl").read_bytes()
    assert np.array_equal(scores["score"].to_numpy(), same["score"].to_numpy())
    meta = json.loads((first.out_dir / "fitted" / "daar.json").read_text())
    assert [m["seed"] for m in meta["members"]] == member_seeds(42, 3)[1:]
    assert {"probe-1.safetensors", "reward-2.safetensors"} <= set(meta["files"])
    single, one = run(setup, "ens-1")
    assert not np.array_equal(one["reward"].to_numpy(), scores["reward"].to_numpy())  # the mean of three heads
    # the saved state scores as the fitted one did
    from daar.select.base import Context
    from daar.select.daar import DaarSelector

    loaded = DaarSelector.load(first.out_dir / "fitted")
    ctx = Context(SelectConfig(model=str(setup["model"]), domains=DOMAINS, device="cpu"), setup["cache"])
    pool = read_pool(setup["pool"])
    assert np.allclose(loaded.score(pool, ctx)["score"], scores["score"].to_numpy())
    # neighbouring seeds never share members
    assert not set(member_seeds(1, 5)) & set(member_seeds(2, 5))


def test_length_adjustment_removes_what_length_explains(setup: dict) -> None:
    result, scores = run(setup, "length", reward_adjust="length")
    chars = np.array([len(r.text) for r in read_pool(setup["pool"]).records], dtype=float)
    adjusted = scores["adjusted_reward"].to_numpy()
    assert np.array_equal(scores["score"].to_numpy(), adjusted)
    group = scores["pseudo_domain"].to_numpy(dtype=object)
    lines = json.loads((result.out_dir / "fitted" / "daar.json").read_text())
    assert "length_lines" not in lines  # kept in centroids.safetensors with the other arrays
    for name in set(group):
        members = group == name
        if members.sum() > 5:  # residuals of a least-squares line are uncorrelated with its input
            assert abs(np.corrcoef(np.log1p(chars[members]), adjusted[members])[0, 1]) < 1e-6


def test_length_lines_fit_each_group() -> None:
    x = np.log1p(np.array([10.0, 100, 1000, 50, 500, 5]))
    group = np.array([0, 0, 0, 1, 1, 2])
    y = np.where(group == 0, 1 + 2 * x, 3 - x)
    lines = fit_length_lines(y, x, group, 4)
    assert np.allclose(lines[0], [1, 2]) and np.allclose(lines[1], [3, -1])
    assert np.allclose(lines[2], [y[5], 0]) and np.allclose(lines[3], [0, 0])  # one row; no row
