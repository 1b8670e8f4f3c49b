"""Cache entries that prove themselves (issue 26): a byte flipped in, or a cut of, one entry of each
kind makes that entry a miss; it is computed again with one warning naming it, and the run's
outputs are byte for byte those of a run on a clean cache. `daar cache --verify` finds and removes
the same damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.cli import app
from daar.config import ExampleRow, SelectConfig
from daar.errors import UserError
from daar.pipeline import run_select
from daar.scale.cut import gather, select_from_scores
from daar.scale.fit import fit_pool
from daar.scale.folder import ScoreFolder
from daar.scale.score import score_pool
from daar.utils.cache_size import entries

EXAMPLES = {
    "numbers": [
        {"instruction": "What is 12 times 7?", "output": "84."},
        {"instruction": "Add 2 and 5.", "output": "7"},
    ],
    "words": [
        {"instruction": "Capital of France?", "output": "Paris."},
        {"instruction": "Spell cat.", "output": "c-a-t"},
    ],
}


def damage(path: Path, how: str) -> None:
    """Flip one byte in the middle of the file, or cut it to a third."""
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 3 :]
    path.write_bytes(bytes(data))


def outputs(run: Path) -> dict[str, bytes]:
    """Every output a rerun must give byte for byte (not the manifest: it holds times and cache hits)."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", ".daar.lock")
    }


def largest(folder: Path, pattern: str) -> Path:
    return max(
        (p for p in folder.glob(pattern) if p.is_file() and not p.name.endswith((".lock", ".digests.json"))),
        key=lambda p: p.stat().st_size,
    )


@pytest.fixture(scope="module")
def setup(tiny_model, real_rows, tmp_path_factory):
    """A run on a clean cache: its settings, pool, outputs and cache."""
    root = tmp_path_factory.mktemp("damaged")
    pool = write_jsonl(root / "pool.jsonl", real_rows[:60])
    (root / "examples.yaml").write_text(yaml.safe_dump(EXAMPLES))
    config = SelectConfig.model_validate(
        {
            "model": str(tiny_model),
            "domains": [{"name": k, "description": f"{k} questions"} for k in EXAMPLES],
            "examples_file": str(root / "examples.yaml"),
            "device": "cpu",
            "heads": {"epochs": 1, "batch_size": 16},
            "budget_tokens": 4000,  # so that the pool's token counts are an entry too
        }
    )
    run_select(config, pool, root / "clean", cache_dir=root / "cache", report=False)
    return config, pool, outputs(root / "clean"), root / "cache"


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_entry_of_each_kind_is_computed_again(setup, tmp_path, capsys, how):
    config, pool, clean, clean_cache = setup
    cache = shutil.copytree(clean_cache, tmp_path / "cache")
    kinds = {e.kind for e in entries(cache)}
    assert kinds == {"features", "stages", "token_ids", "token_counts"}
    damaged = [
        *(largest(folder, "*") for folder in (cache / "features").iterdir() if folder.is_dir()),  # pool, examples
        *(
            largest(cache / "token_ids", f"{p.name.split('.')[0]}.*")
            for p in (cache / "token_ids").glob("*.safetensors")
        ),
        largest(cache / "stages", "cluster-*"),
        largest(cache / "stages", "probe-*"),
        (cache / "stages").glob("reward-*.json").__next__(),  # a head's metrics: the small file of the pair
        largest(cache / "token_counts", "*"),
    ]
    assert len(damaged) == 8
    for path in damaged:
        damage(path, how)
    capsys.readouterr()

    run_select(config, pool, tmp_path / "run", cache_dir=cache, report=False)
    assert outputs(tmp_path / "run") == clean
    warned = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    names = {p.parent.name if p.parent.parent.name == "features" else p.name.split(".")[0] for p in damaged}
    assert len(warned) == len(names) == 8, warned  # one warning per entry, naming it
    assert all(any(name in line for line in warned) for name in names)

    again = run_select(config, pool, tmp_path / "again", cache_dir=cache, report=False)
    assert "is damaged" not in capsys.readouterr().err  # repaired: read as any other entry
    assert all(stage["cached"] for name, stage in again.manifest["stages"].items() if name in ("features", "probe"))
    assert outputs(tmp_path / "again") == clean


def test_cache_verify_removes_damaged_entries_only(setup, tmp_path):
    config, pool, clean, clean_cache = setup
    cache = shutil.copytree(clean_cache, tmp_path / "cache")
    before = {e.name for e in entries(cache)}
    probe = largest(cache / "stages", "probe-*")
    damage(probe, "flip")
    features = next(f for f in (cache / "features").iterdir() if f.is_dir())
    damage(features / "hid.f32", "truncate")
    (cache / "stages" / "unfinished-0123.safetensors").write_bytes(b"no digest list")  # as a killed run leaves
    result = CliRunner().invoke(app, ["cache", "--cache-dir", str(cache), "--verify"])
    assert result.exit_code == 0, result.output
    assert f"removed {probe.parent / probe.name.split('.')[0]}" in result.output and "does not match" in result.output
    assert f"{features.name}/hid.f32 holds" in result.output
    assert "2 damaged entries removed" in result.output and "1 unfinished" in result.output
    after = {e.name for e in entries(cache)}
    assert after == (before - {probe.name.split(".")[0], features.name}) | {"unfinished-0123"}
    run_select(config, pool, tmp_path / "run", cache_dir=cache, report=False)
    assert outputs(tmp_path / "run") == clean


def test_cache_verify_dry_run_names_damaged_entries_and_removes_nothing(setup, tmp_path):
    _, _, _, clean_cache = setup
    cache = shutil.copytree(clean_cache, tmp_path / "cache")
    probe = largest(cache / "stages", "probe-*")
    damage(probe, "flip")
    before = sorted(p for p in cache.rglob("*"))
    result = CliRunner().invoke(app, ["cache", "--cache-dir", str(cache), "--verify", "--dry-run"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"would remove {probe.parent / probe.name.split('.')[0]}" in output and "does not match" in output
    assert "1 damaged entries would be removed" in output
    assert sorted(p for p in cache.rglob("*")) == before  # not a file removed (or a lock file added)


def test_damaged_model_scores_are_computed_again(setup, tmp_path, capsys):
    config, pool, _, _ = setup
    ifd = config.model_copy(update={"method": "ifd", "budget_tokens": None})
    first = run_select(ifd, pool, tmp_path / "a", cache_dir=tmp_path / "cache", report=False)
    chunk = largest(tmp_path / "cache" / "ifd", "*")
    damage(chunk, "flip")
    capsys.readouterr()
    run_select(ifd, pool, tmp_path / "b", cache_dir=tmp_path / "cache", report=False)
    assert chunk.name.split(".")[0] in capsys.readouterr().err
    assert outputs(tmp_path / "b") == outputs(first.out_dir)


def test_damaged_scores_blocks_are_scored_again(setup, tmp_path, capsys):
    config, pool, _, _ = setup
    fitted, scores = tmp_path / "fitted", tmp_path / "scores"
    fit_pool(config.model_copy(update={"budget_tokens": None}), pool, fitted, tmp_path / "cache")
    score_pool(pool, fitted, scores, chunk_rows=20)
    whole = gather(ScoreFolder(scores))
    blocks = sorted((scores / "blocks").glob("*.parquet"))
    damage(blocks[0], "flip")
    damage(sorted((scores / "features").glob("*.safetensors"))[1], "truncate")
    with pytest.raises(UserError, match=f"block {blocks[0].stem} is damaged"):
        select_from_scores(scores, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    capsys.readouterr()
    summary = score_pool(pool, fitted, scores, chunk_rows=20)
    assert summary["scored_now"] == 2 and capsys.readouterr().err.count("is damaged") == 2
    pd.testing.assert_frame_equal(gather(ScoreFolder(scores)), whole)
    assert np.isfinite(whole["score"]).all()
    select_from_scores(scores, tmp_path / "run")


class ScriptedWriter:
    """Stands in for the example-writing model, which the tiny random model cannot be (it writes no
    valid JSON) and the real one is minutes per run on a test machine: the cache entry, not the
    writing, is under test. It writes the same pairs and log on every call and counts its calls."""

    calls = 0

    def __init__(self, model_dir, cfg, seed, device, dtype, trust_remote_code) -> None:
        self.seed = seed

    def write(self, states, on_round=lambda: None) -> None:
        ScriptedWriter.calls += 1
        for st in states:
            for i in range(3):
                pair = ExampleRow(instruction=f"A {st.domain.name} question number {i}?", output=f"answer {i}")
                st.accepted.append(pair)
                st.log.append({"stage": "round 1", "raw": pair.instruction, "verdict": "accepted"})


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_damaged_generated_examples_are_written_again(setup, tmp_path, capsys, monkeypatch, how):
    config, pool, _, _ = setup
    monkeypatch.setattr("daar.select.daar.ExampleWriter", ScriptedWriter)
    monkeypatch.setattr(ScriptedWriter, "calls", 0)
    generated = config.model_copy(update={"examples_file": None, "budget_tokens": None})
    first = run_select(generated, pool, tmp_path / "a", cache_dir=tmp_path / "cache", report=False)
    assert ScriptedWriter.calls == 1 and sorted(p.name for p in (tmp_path / "a" / "examples").iterdir()) == [
        "numbers.json",
        "numbers.raw.json",
        "words.json",
        "words.raw.json",
    ]
    folder = next((tmp_path / "cache" / "stages").glob("examples-*/"))
    damage(folder / ("words.json" if how == "flip" else "numbers.raw.json"), how)
    capsys.readouterr()
    run_select(generated, pool, tmp_path / "b", cache_dir=tmp_path / "cache", report=False)
    assert ScriptedWriter.calls == 2 and f"{folder} (examples) is damaged" in capsys.readouterr().err
    assert outputs(tmp_path / "b") == outputs(first.out_dir)
