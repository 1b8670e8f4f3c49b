"""Every baseline on a tiny pool: order, counts, seeding, and that none reads domain/source/id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from daar.config import SelectConfig
from daar.embed import Features
from daar.read import Pool, Record
from daar.select.base import Context, available_selectors, make_selector, top_n
from daar.select.baselines import repr_filter, unit_rows


def _pool(rows: list[tuple[str, str, str]], domains: list[str] | None = None) -> Pool:
    records = []
    for i, (instruction, input_text, output) in enumerate(rows):
        raw = {"id": f"r{i}", "instruction": instruction, "input": input_text, "output": output}
        raw["domain"] = (domains or ["x"] * len(rows))[i]
        records.append(Record(i, f"r{i}", instruction, input_text, output, raw))
    return Pool(Path("toy.jsonl"), records, [], len(records), "")


@dataclass
class FakeContext(Context):
    """A Context whose e(x) is given, so the geometric baselines run without a model."""

    emb: np.ndarray | None = None

    def features(self, pool: Pool) -> Features:
        assert self.emb is not None and len(self.emb) == len(pool)
        return Features(self.emb, self.emb, np.ones(len(pool), dtype=np.int64))


def _ctx(tmp_path, emb=None, **cfg) -> FakeContext:
    return FakeContext(SelectConfig(**cfg), tmp_path, emb=emb)


ROWS = [
    ("a", "", "xxxx"),
    ("bbbbbb", "in", "x"),
    ("cc", "", "xx"),
    ("ddd", "dd", "xxxxxxxxx"),
    ("e", "", "xxx"),
]


def _run(name: str, pool: Pool, ctx: Context, n: int, **params) -> tuple[np.ndarray, np.ndarray]:
    selector = make_selector(name, **params).fit(pool, ctx)
    scores = selector.score(pool, ctx)
    return scores["score"], selector.select(pool, ctx, n, scores)


def test_all_baselines_are_registered():
    names = set(available_selectors())
    assert {"random", "instruction_length", "output_length", "ifd", "deita", "kcenter", "alpagasus"} <= names


def test_length_baselines_order(tmp_path):
    pool, ctx = _pool(ROWS), _ctx(tmp_path)
    score, chosen = _run("instruction_length", pool, ctx, 2)
    assert score.tolist() == [1, 8, 2, 5, 1]
    assert chosen.tolist() == [1, 3]
    score, chosen = _run("output_length", pool, ctx, 3)
    assert chosen.tolist() == [0, 3, 4]


def test_random_is_seeded(tmp_path):
    pool = _pool(ROWS * 20)
    a = _run("random", pool, _ctx(tmp_path, seed=1), 30)[1]
    b = _run("random", pool, _ctx(tmp_path, seed=1), 30)[1]
    c = _run("random", pool, _ctx(tmp_path, seed=2), 30)[1]
    assert len(a) == 30 and np.array_equal(a, b) and not np.array_equal(a, c)


def _clusters(seed: int = 0) -> np.ndarray:
    """30 rows near axis 0, 5 near axis 1, 2 near axis 2 (of 6 dims)."""
    rng = np.random.default_rng(seed)
    sizes = [30, 5, 2]
    parts = [np.eye(6)[k] + rng.normal(scale=0.02, size=(s, 6)) for k, s in enumerate(sizes)]
    return np.concatenate(parts).astype(np.float32)


def test_kcenter_picks_one_point_per_cluster_and_is_seeded(tmp_path):
    emb = _clusters()
    pool = _pool([("i", "", "o")] * len(emb))
    cluster = np.repeat([0, 1, 2], [30, 5, 2])
    for seed in (0, 1, 7):
        score, chosen = _run("kcenter", pool, _ctx(tmp_path, emb, seed=seed, count=3), 3)
        assert sorted(cluster[chosen].tolist()) == [0, 1, 2]
        assert np.array_equal(top_n(score, 3), chosen)  # the score ranks the greedy picks first
    again = _run("kcenter", pool, _ctx(tmp_path, emb, seed=7, count=3), 3)[1]
    assert np.array_equal(again, chosen)
    # asked for more rows than the score was fitted for: select reruns the greedy
    more = _run("kcenter", pool, _ctx(tmp_path, emb, seed=0, count=3), 10)[1]
    assert len(more) == 10 and len(np.unique(more)) == 10


def test_deita_honours_threshold_and_fills(tmp_path):
    emb = _clusters()
    rows = [("i" * (k + 1), "", "o" * (k + 1)) for k in range(len(emb))]  # score grows with the row index
    pool = _pool(rows)
    selector = make_selector("deita", threshold=0.1)
    ctx = _ctx(tmp_path, emb)
    scores = selector.score(pool, ctx)
    chosen = selector.select(pool, ctx, 3, scores)
    assert sorted(chosen.tolist()) == [29, 34, 36]  # best of each cluster; near-duplicates skipped
    assert selector.last_stats == {"filtered": 3, "filled": 0}
    x = unit_rows(emb[chosen])
    sims = x @ x.T
    assert (1 - sims[np.triu_indices(3, 1)] > 0.1).all()
    chosen = selector.select(pool, ctx, 5, scores)  # only 3 clusters: two rows come from the fill
    assert selector.last_stats == {"filtered": 3, "filled": 2}
    assert sorted(chosen.tolist()) == [29, 33, 34, 35, 36]  # fill: best skipped rows 35, 33
    loose = repr_filter(emb, scores["score"], 5, threshold=0.0)
    assert loose.tolist() == [36, 35, 34, 33, 32]
    with pytest.raises(ValueError):
        make_selector("deita", threshold=3.0)


def test_selectors_ignore_domain_source_and_id(tmp_path):
    emb = _clusters()
    rows = [(f"q{k % 7}", "", "a" * (k % 11 + 1)) for k in range(len(emb))]
    plain = _pool(rows)
    tampered = _pool(rows, domains=[f"d{k}" for k in range(len(rows))])
    records = [
        Record(
            r.position,
            f"other{r.position}",
            r.instruction,
            r.input,
            r.output,
            {**r.raw, "source": "s", "id": "z"},
        )
        for r in tampered.records
    ]
    tampered = Pool(Path("other.jsonl"), records, [], len(records), "")
    for name in ("random", "instruction_length", "output_length", "kcenter", "deita"):
        a = _run(name, plain, _ctx(tmp_path, emb, count=5), 5)
        b = _run(name, tampered, _ctx(tmp_path, emb, count=5), 5)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), name


@pytest.fixture()
def real_pool(real_rows) -> Pool:
    from daar.config import FieldMap
    from daar.read import to_record

    return Pool(Path("real.jsonl"), [to_record(r, i, FieldMap()) for i, r in enumerate(real_rows[:10])], [], 10, "")


def _model_ctx(tiny_model, tmp_path) -> Context:
    return Context(SelectConfig(model=str(tiny_model), max_length=128, batch_tokens=512, device="cpu"), tmp_path)


def test_ifd_scores_rank_unhelpful_instructions_last_and_cache(tiny_model, tmp_path, real_pool, monkeypatch):
    ctx = _model_ctx(tiny_model, tmp_path)
    scores = make_selector("ifd").score(real_pool, ctx)
    ifd = scores["ifd"]
    assert ifd.shape == (10,) and np.isfinite(ifd).all() and (ifd > 0).all()
    np.testing.assert_allclose(ifd, scores["loss_conditioned"] / scores["loss_alone"])
    helpful, unhelpful = ifd < 1, ifd >= 1
    if helpful.any() and unhelpful.any():
        assert scores["score"][helpful].min() > scores["score"][unhelpful].max()
    np.testing.assert_allclose(scores["score"][helpful], ifd[helpful])
    # a rerun reads the cache: the model must not be loaded again
    import daar.select.model_scored as module

    monkeypatch.setattr(module, "load_causal_lm", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    again = make_selector("ifd").score(real_pool, _model_ctx(tiny_model, tmp_path))
    np.testing.assert_allclose(again["ifd"], ifd)


def test_ifd_loss_matches_a_plain_forward_pass(tiny_model, tmp_path, real_pool):
    from transformers import AutoModelForCausalLM

    from daar.select.model_scored import _LM, _ifd_ids

    ctx = _model_ctx(tiny_model, tmp_path)
    lm = _LM(ctx)
    record = real_pool.records[0]
    prompt, output = _ifd_ids(lm.tokenizer, record, 128)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.tensor([prompt + output])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    with torch.no_grad():
        expected = model(input_ids=ids, labels=labels).loss.item()
    short = [1, 2, 3]  # batched with a shorter sequence: padding must not change the loss
    got = lm.target_nll([prompt + output, short], [len(prompt), 1])
    assert got[0] == pytest.approx(expected, rel=1e-4)


def test_alpagasus_expected_rating(tiny_model, tmp_path, real_pool):
    ctx = _model_ctx(tiny_model, tmp_path)
    selector = make_selector("alpagasus")
    scores = selector.score(real_pool, ctx)
    assert ((scores["score"] >= 1) & (scores["score"] <= 5)).all()
    assert ((scores["digit_mass"] > 0) & (scores["digit_mass"] <= 1)).all()
    chosen = selector.select(real_pool, ctx, 4, scores)
    assert np.array_equal(chosen, top_n(scores["score"], 4))
    again = make_selector("alpagasus").score(real_pool, ctx)
    np.testing.assert_allclose(again["score"], scores["score"])


def test_deita_with_ifd_proxy(tiny_model, tmp_path, real_pool):
    ctx = _model_ctx(tiny_model, tmp_path)
    selector = make_selector("deita", proxy="ifd", threshold=0.0)
    scores = selector.score(real_pool, ctx)
    chosen = selector.select(real_pool, ctx, 3, scores)
    assert len(chosen) == 3 and "ifd" in scores
