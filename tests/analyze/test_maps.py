"""2-D maps: seeded sampling, separable blobs stay apart, PNG and coordinates written."""

from __future__ import annotations

import json

import numpy as np
import typer
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.analyze.commands import register
from daar.analyze.maps import embed_2d, plot_map, sample_indices


def _blobs(n_per: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 10
    x = np.concatenate([c + rng.normal(scale=0.3, size=(n_per, 8)) for c in centres])
    return x, np.repeat(np.arange(3), n_per)


def test_sample_indices_respects_budget_and_keeps_selection():
    selected = np.zeros(10_000, dtype=bool)
    selected[:50] = True
    idx = sample_indices(10_000, 300, seed=1, selected=selected)
    assert len(idx) == 300 and len(np.unique(idx)) == 300
    assert selected[idx].sum() == 50  # a small selection is drawn whole
    assert np.array_equal(idx, sample_indices(10_000, 300, seed=1, selected=selected))
    assert np.array_equal(sample_indices(20, 300, seed=1), np.arange(20))


def test_tsne_map_is_seeded_and_separates_blobs(tmp_path):
    x, labels = _blobs()
    first = embed_2d(x, seed=3, method="tsne")
    second = embed_2d(x, seed=3, method="tsne")
    assert first.method == "tsne" and first.coords.shape == (90, 2)
    np.testing.assert_allclose(first.coords, second.coords)
    centres = np.array([first.coords[labels == j].mean(0) for j in range(3)])
    spread = max(np.linalg.norm(first.coords[labels == j] - centres[j], axis=1).mean() for j in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread
    selected = labels == 1
    png = plot_map(first, tmp_path / "m.png", labels, ["a", "b", "c"], selected, "toy")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = first.to_json(labels, ["a", "b", "c"], selected)
    assert len(data["points"]) == 90 and data["points"][30]["label"] == "b" and data["points"][30]["selected"]


def test_points_placed_by_neighbours_land_in_their_own_cluster(monkeypatch):
    from daar.analyze import maps

    monkeypatch.setattr(maps, "FIT_POINTS", 45)  # half the rows fitted, the other half placed
    x, labels = _blobs()
    first = embed_2d(x, seed=5, method="tsne")
    np.testing.assert_array_equal(first.coords, embed_2d(x, seed=5, method="tsne").coords)
    assert first.coords.shape == (90, 2) and np.isfinite(first.coords).all()
    centres = np.array([first.coords[labels == j].mean(0) for j in range(3)])
    nearest = np.linalg.norm(first.coords[:, None] - centres[None], axis=2).argmin(1)
    assert (nearest == labels).all()  # fitted and placed rows alike sit nearest their own cluster's centre


def test_subsampled_map_returns_matching_indices():
    x, _ = _blobs(n_per=40)
    result = embed_2d(x, seed=0, method="tsne", max_points=50)
    assert result.coords.shape == (50, 2) and len(result.indices) == 50
    assert result.indices.max() < 120


def test_map_command(tmp_path, tiny_model, real_rows):
    rows = real_rows[:80]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    selection = write_jsonl(tmp_path / "selected.jsonl", rows[:10])
    app = typer.Typer()
    register(app)
    out = tmp_path / "maps" / "map.png"
    args = ["map", str(pool), "--labels", "domain", "--selection", str(selection), "--out", str(out)]
    args += ["--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache"), "--method", "tsne"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["points"]) == 80
    chosen = {p["id"] for p in data["points"] if p["selected"]}
    assert chosen == {r["id"] for r in rows[:10]}
    bad = CliRunner().invoke(app, args[:2] + ["--labels", "nope", "--out", str(out), "--model", str(tiny_model)])
    assert bad.exit_code == 2 and "unknown label field" in bad.output
