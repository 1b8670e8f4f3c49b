"""The probe and reward heads learn from features, validate honestly and round-trip through safetensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from daar.config import HEAD_SCHEDULES, PAPER_HEADS, HeadConfig, SelectConfig
from daar.probe import heads
from daar.probe.heads import SINGLE_THREAD_PARAMS, Head, head_parameters, make_mlp, split_rows, train_head
from daar.select.daar import _hint_batched_heads


def _blobs(n: int, k: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centers = rng.normal(0, 5, (k, dim))
    return (centers[labels] + rng.normal(0, 1, (n, dim))).astype(np.float32), labels


def test_mlp_has_the_papers_shape():
    mlp = make_mlp(64, 3)
    widths = [(m.in_features, m.out_features) for m in mlp if isinstance(m, torch.nn.Linear)]
    assert widths == [(64, 128), (128, 64), (64, 32), (32, 256), (256, 3)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in mlp) == 4


def test_split_is_seeded_and_disjoint():
    train, val = split_rows(200, 0.03, seed=1)
    assert len(val) == 6 and len(train) == 194 and not set(train) & set(val)
    assert np.array_equal(val, split_rows(200, 0.03, seed=1)[1])
    assert not np.array_equal(val, split_rows(200, 0.03, seed=2)[1])


def test_classifier_learns_separable_domains():
    x, y = _blobs(600, 3, 16)
    head = train_head(x, y, "classify", 3, HeadConfig(val_fraction=0.1, epochs=3, lr=1e-4, batch_size=8), seed=0)
    assert head.metrics["val_rows"] == 60 and head.metrics["train_rows"] == 540
    assert head.metrics["val_accuracy"] >= 0.9
    assert head.predict(x).shape == (600, 3)


def test_regressor_beats_predicting_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (800, 8)).astype(np.float32)
    y = np.tanh(x[:, 0]) + 0.5 * x[:, 1] ** 2
    head = train_head(x, y, "regress", 1, HeadConfig(val_fraction=0.1, epochs=5, lr=1e-3, batch_size=8), seed=0)
    assert head.metrics["val_mse"] < 0.5 * head.metrics["val_mse_of_mean"]
    assert head.metrics["val_spearman"] > 0.8


def test_defaults_stop_early_and_the_paper_preset_is_the_authors():
    cfg = HeadConfig()
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.patience, cfg.val_fraction) == (1e-4, 20, 8, 2, 0.03)
    paper = PAPER_HEADS
    assert (paper.lr, paper.epochs, paper.batch_size, paper.patience, paper.max_reward_rows) == (1e-5, 1, 1, None, 5000)


def test_schedules_are_chosen_by_name_in_settings():
    assert SelectConfig(heads="paper").heads == PAPER_HEADS
    batched = SelectConfig.model_validate({"heads": "batched"}).heads
    assert (batched.batch_size, batched.lr, batched.patience, batched.epochs) == (64, 2.8e-4, 2, 20)
    assert SelectConfig(heads={"lr": 1e-3}).heads == HeadConfig(lr=1e-3)  # a mapping still works
    batched.lr = 1.0  # the settings hold a copy: changing them leaves the registry alone
    assert HEAD_SCHEDULES["batched"].lr == 2.8e-4


@pytest.mark.parametrize("dim", [12, 576, 1100])
def test_head_parameters_counts_the_mlp(dim):
    assert head_parameters(dim, 4) == sum(p.numel() for p in make_mlp(dim, 4).parameters())


@pytest.mark.parametrize(
    ("dim", "heads", "device", "hinted"),
    [(3584, "default", "cpu", True), (3584, "paper", "cpu", True), (3584, "batched", "cpu", False),
     (3584, "default", "cuda", False), (576, "default", "cpu", False)],
)
def test_wide_heads_on_cpu_point_to_the_batched_schedule(capsys, dim, heads, device, hinted):
    _hint_batched_heads("probe", dim, 4, SelectConfig(heads=heads), device)
    err = " ".join(capsys.readouterr().err.split())
    assert ("58 M parameters" in err and "--set heads=batched" in err) if hinted else err == ""


def test_the_progress_bar_does_not_change_the_head():
    x, y = _blobs(200, 3, 8)
    cfg = HeadConfig(epochs=3, patience=None)
    quiet = train_head(x, y, "classify", 3, cfg, seed=2).predict(x)
    shown = train_head(x, y, "classify", 3, cfg, seed=2, label="probe").predict(x)
    assert np.array_equal(quiet, shown)


def test_early_stopping_keeps_the_best_epoch():
    x, y = _blobs(300, 3, 8)
    y = np.where(np.random.default_rng(1).random(len(y)) < 0.3, (y + 1) % 3, y)  # label noise to overfit
    head = train_head(x, y, "classify", 3, HeadConfig(val_fraction=0.2, lr=1e-3, patience=2), seed=0)
    epochs, best = head.metrics["epochs"], head.metrics["best_epoch"]
    assert epochs < 20 and epochs - best == 2  # stopped two epochs after the best one
    fixed = train_head(x, y, "classify", 3, HeadConfig(val_fraction=0.2, lr=1e-3, patience=None, epochs=3), seed=0)
    assert fixed.metrics["epochs"] == 3 == fixed.metrics["best_epoch"]


@pytest.mark.parametrize("threshold", [SINGLE_THREAD_PARAMS, 0])
def test_paper_schedule_matches_a_plain_batch_one_loop(monkeypatch, threshold):
    """The device-resident loop trains what the straightforward per-row loop trains; with the
    threshold at 0 the head counts as large and is trained with fused Adam, which agrees too."""
    monkeypatch.setattr(heads, "SINGLE_THREAD_PARAMS", threshold)
    x, y = _blobs(300, 3, 12)
    head = train_head(x, y, "classify", 3, PAPER_HEADS, seed=5)
    train, _ = split_rows(len(x), PAPER_HEADS.val_fraction, 5)
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    xt = torch.from_numpy(x)
    mean, std = xt[train].mean(0), xt[train].std(0, unbiased=False).clamp(min=1e-6)
    mlp = make_mlp(12, 3)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=PAPER_HEADS.lr)
    order = torch.as_tensor(train)[torch.randperm(len(train), generator=generator)]
    for row in order:
        loss = torch.nn.functional.cross_entropy(mlp(((xt[row] - mean) / std)[None]), torch.as_tensor(y[row])[None])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        expected = mlp((xt - mean) / std).numpy()
    assert np.allclose(head.predict(x), expected, atol=1e-6)


def test_training_is_deterministic_for_a_seed():
    x, y = _blobs(200, 2, 8)
    a = train_head(x, y, "classify", 2, HeadConfig(epochs=1), seed=3).predict(x)
    b = train_head(x, y, "classify", 2, HeadConfig(epochs=1), seed=3).predict(x)
    assert np.array_equal(a, b)


def test_state_round_trips_through_safetensors(tmp_path):
    x, y = _blobs(100, 4, 12)
    head = train_head(x, y, "classify", 4, HeadConfig(epochs=1), seed=0)
    save_file(head.state(), str(tmp_path / "head.safetensors"))
    loaded = Head.from_state(load_file(str(tmp_path / "head.safetensors")))
    assert np.array_equal(loaded.predict(x), head.predict(x))
