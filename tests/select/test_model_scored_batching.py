"""IFD and Alpagasus scores do not depend on how rows are batched: several right-padded rows per
forward pass give the same numbers as one row per pass (the masked, unpadded computation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import daar.select.model_scored as module
from daar.config import FieldMap, SelectConfig
from daar.read import Pool, to_record
from daar.select.base import Context, make_selector


@pytest.fixture()
def pool(real_rows) -> Pool:
    rows = real_rows[:12]
    return Pool(Path("real.jsonl"), [to_record(r, i, FieldMap()) for i, r in enumerate(rows)], [], len(rows), "")


@pytest.mark.parametrize(
    ("method", "columns"), [("ifd", ["loss_conditioned", "loss_alone", "ifd"]), ("alpagasus", ["rating", "digit_mass"])]
)
def test_batched_scores_equal_one_row_per_pass(method, columns, tiny_model, tmp_path, pool, monkeypatch):
    def scores(name: str) -> dict[str, np.ndarray]:
        config = SelectConfig(model=str(tiny_model), max_length=128, batch_tokens=4096, device="cpu")
        return make_selector(method).score(pool, Context(config, tmp_path / name))

    batched_sizes: list[int] = []
    real_batches = module._batches

    def spy(lengths, ctx):
        batches = real_batches(lengths, ctx)
        batched_sizes.extend(len(b) for b in batches)
        return batches

    monkeypatch.setattr(module, "_batches", spy)
    batched = scores("batched")  # all 12 rows in one or two right-padded batches
    assert max(batched_sizes) > 1
    monkeypatch.setattr(module, "_batches", lambda lengths, ctx: [np.array([i]) for i in range(len(lengths))])
    single = scores("single")  # one row per forward pass: no padding at all
    for column in columns:
        np.testing.assert_allclose(batched[column], single[column], rtol=1e-4, atol=1e-4, err_msg=column)
    np.testing.assert_allclose(batched["score"], single["score"], rtol=1e-4, atol=1e-4)
