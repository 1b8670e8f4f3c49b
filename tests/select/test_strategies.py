"""The budget strategies: exact counts per pseudo-domain, top rewards inside each, determinism, any K."""

from __future__ import annotations

import numpy as np
import pytest

from daar.select import strategies as S
from daar.select.checks import selection_warnings
from daar.utils.stats import spearman


def _pool(sizes: dict[str, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = np.array([name for name, size in sizes.items() for _ in range(size)], dtype=object)
    order = rng.permutation(len(group))
    return rng.random(len(group)), group[order]


def _counts(group: np.ndarray, chosen: np.ndarray, names: list[str]) -> list[int]:
    return [int((group[chosen] == name).sum()) for name in names]


def test_equal_shares_take_the_top_rewards_of_each_group():
    score, group = _pool({"a": 500, "b": 300, "c": 200})
    names = ["a", "b", "c"]
    chosen = S.balanced(score, group, names, 150, "equal")
    assert len(chosen) == 150 and _counts(group, chosen, names) == [50, 50, 50]
    for name in names:
        members = np.flatnonzero(group == name)
        kept = np.intersect1d(members, chosen)
        assert score[kept].min() > score[np.setdiff1d(members, kept)].max()


def test_proportional_shares_follow_group_sizes_with_largest_remainders():
    score, group = _pool({"a": 501, "b": 299, "c": 200})
    assert _counts(group, S.balanced(score, group, ["a", "b", "c"], 100, "proportional"), ["a", "b", "c"]) == [
        50,
        30,
        20,
    ]
    # 7 rows over 1000: exact shares 3.507, 2.093, 1.4 -> floors 3, 2, 1 and the last row to the largest remainder
    assert S.allocate([501, 299, 200], [501, 299, 200], 7).tolist() == [4, 2, 1]


def test_groups_smaller_than_their_share_give_all_they_have():
    score, group = _pool({"a": 1000, "b": 40, "c": 5})
    names = ["a", "b", "c", "empty"]  # a pseudo-domain no row falls into
    chosen = S.balanced(score, group, names, 300, "equal")
    assert _counts(group, chosen, names) == [255, 40, 5, 0] and len(chosen) == 300
    assert len(S.balanced(score, group, names, 5000, "equal")) == 1045  # never more than the pool


@pytest.mark.parametrize("k", [2, 3, 7])
def test_any_number_of_domains_and_exact_budgets(k: int):
    sizes = {f"d{j}": 40 + 37 * j for j in range(k)}
    score, group = _pool(sizes, seed=k)
    names = list(sizes)
    for n in (1, k, 55, sum(sizes.values())):
        for shares in ("equal", "proportional"):
            chosen = S.balanced(score, group, names, n, shares)
            assert len(chosen) == len(np.unique(chosen)) == n
            counts = _counts(group, chosen, names)
            if shares == "equal" and n >= k and n <= min(sizes.values()) * k:
                assert max(counts) - min(counts) <= 1


def test_same_inputs_same_selection_and_ties_broken_by_row_order():
    score = np.zeros(10)
    group = np.array(["a"] * 5 + ["b"] * 5, dtype=object)
    first = S.balanced(score, group, ["a", "b"], 4, "equal")
    assert first.tolist() == [0, 1, 5, 6]
    assert np.array_equal(first, S.balanced(score.copy(), group.copy(), ["a", "b"], 4, "equal"))


def test_customized_keeps_the_papers_proportions_at_any_budget():
    score, group = _pool({"code": 400, "math": 400, "qa": 400})
    names = ["code", "math", "qa"]
    paper = S.customized(score, group, names, 280, "code", 0.5, 0.1)  # 200 + 40 + 40, the paper's own budget
    assert _counts(group, paper, names) == [200, 40, 40]
    half = S.customized(score, group, names, 140, "code", 0.5, 0.1)
    assert _counts(group, half, names) == [100, 20, 20]
    only_target = S.customized(score, group, names, 500, "code", 0.5, 0.0)  # more than the target group holds
    assert len(only_target) == 500 and _counts(group, only_target, names)[0] == 400


def test_warning_when_one_pseudo_domain_dominates():
    score, group = _pool({"a": 800, "b": 100, "c": 100})
    mask = np.zeros(len(score), dtype=bool)
    mask[S.top_n(np.where(group == "a", 1.0 + score, score), 200)] = True  # all from "a"
    chars = np.arange(len(score), dtype=float)
    found = selection_warnings({"score": score, "pseudo_domain": group}, mask, chars, "overall")
    assert [w["kind"] for w in found] == ["dominant_pseudo_domain"]
    assert (
        found[0]["value"] == 1.0
        and "'a' holds 100%" in found[0]["message"]
        and "--strategy balanced" in found[0]["message"]
    )
    mask[:] = False
    mask[S.balanced(score, group, ["a", "b", "c"], 200, "equal")] = True
    assert selection_warnings({"score": score, "pseudo_domain": group}, mask, chars, "balanced") == []


def test_warning_when_the_reward_follows_length():
    rng = np.random.default_rng(3)
    chars = rng.integers(50, 2000, 500).astype(float)
    group = np.array(["a", "b"] * 250, dtype=object)
    mask = np.zeros(500, dtype=bool)
    mask[::5] = True
    noisy = -chars + rng.normal(0, 300, 500)  # shorter rows score higher
    found = selection_warnings({"score": noisy, "reward": noisy, "pseudo_domain": group}, mask, chars, "balanced")
    assert [w["kind"] for w in found] == ["reward_follows_length"] and found[0]["value"] < -0.3
    assert "favours shorter rows" in found[0]["message"]
    unrelated = rng.normal(0, 1, 500)
    assert abs(spearman(unrelated, chars)) < 0.3
    assert selection_warnings({"score": unrelated, "reward": unrelated, "pseudo_domain": group}, mask, chars, "x") == []
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0])) == pytest.approx(1.0)
