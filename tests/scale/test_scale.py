"""fit / score / cut on real files with a tiny real model: streaming equals in-memory, shards in
and one selection out, Ray equals local, and a killed scorer resumes where it stopped."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.cli import app
from daar.config import SelectConfig
from daar.errors import UserError
from daar.read import read_pool
from daar.scale.cut import gather, select_from_scores
from daar.scale.fit import fit_pool
from daar.scale.folder import ScoreFolder
from daar.scale.score import score_pool
from daar.scale.stream import run_streaming
from daar.select.base import Context
from daar.select.daar import DaarSelector
from daar.utils.cache import load_arrays

SEEDS = {
    "math": [{"instruction": "What is 12 times 7?", "output": "84."}, {"instruction": "Solve 3x=9.", "output": "3"}],
    "code": [
        {"instruction": "Reverse a string in Python.", "output": "s[::-1]"},
        {"instruction": "Print 0 to 9 in Python.", "output": "for i in range(10): print(i)"},
    ],
    "trivia": [
        {"instruction": "Capital of France?", "output": "Paris."},
        {"instruction": "Who wrote Hamlet?", "output": "Shakespeare."},
    ],
}
BAD = [b'{"id": "broken", "instruction": "no closing brace"\n', b'{"id": "no-output", "instruction": "Say hi"}\n']


def config(tiny_model: Path, seeds: Path, **extra) -> SelectConfig:
    return SelectConfig.model_validate(
        {
            "model": str(tiny_model),
            "domains": [{"name": k, "description": f"{k} questions"} for k in SEEDS],
            "examples_file": str(seeds),
            "probe_size": 80,
            "device": "cpu",
            # fp32, so that streamed, sharded and Ray features can be held to the in-memory ones at
            # 1e-4: in bf16 (the default on CPUs with bf16 units) a row's rounding depends on the
            # batch it falls in (measured here: f(x) apart by up to 1.4e-3, scores by 2e-5)
            "dtype": "float32",
            "heads": {"epochs": 2, "batch_size": 16, "val_fraction": 0.1},
            **extra,
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, real_rows):
    """One pool file (150 real rows, 2 bad rows, a duplicate id) and the same rows as 3 shards."""
    root = tmp_path_factory.mktemp("scale")
    (root / "seeds.yaml").write_text(yaml.safe_dump(SEEDS), encoding="utf-8")
    rows = real_rows[:150]
    single = write_jsonl(root / "pool.jsonl", rows)
    with open(single, "ab") as handle:
        handle.writelines(BAD)
        handle.write(json.dumps(rows[3]).encode() + b"\n")
    shards = root / "shards"
    shards.mkdir()
    write_jsonl(shards / "a.jsonl", rows[:60])
    with gzip.open(shards / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows[60:150])
    with open(shards / "c.jsonl", "wb") as handle:
        handle.writelines(BAD)
        handle.write(json.dumps(rows[3]).encode() + b"\n")
    return root, single, shards


@pytest.fixture(scope="module")
def fitted(files, tiny_model):
    root, single, _ = files
    fit_pool(config(tiny_model, root / "seeds.yaml"), single, root / "fitted")
    return root / "fitted"


@pytest.fixture(scope="module")
def local_scores(files, fitted):
    root, single, _ = files
    score_pool(single, fitted, root / "scores-local", chunk_rows=40)
    return root / "scores-local"


def test_streaming_scores_equal_in_memory(files, fitted, local_scores, tiny_model):
    root, single, _ = files
    pool = read_pool(single)
    ctx = Context(config(tiny_model, root / "seeds.yaml"), root / "memory-cache")
    expected = DaarSelector.load(fitted).score(pool, ctx)
    frame = gather(ScoreFolder(local_scores))
    scored = frame[frame["reason"].isna()].set_index("position")
    # read_pool rejects the duplicate itself; blocks leave that to the cut
    positions = [r.position for r in pool.records]
    assert len(scored) == len(positions) + 1
    got = scored.loc[positions]
    assert np.allclose(got["score"], expected["score"], rtol=1e-4, atol=1e-5)
    assert (got["pseudo_domain"].to_numpy() == expected["pseudo_domain"]).all()
    assert list(got["id"]) == pool.ids
    hid = np.concatenate([load_arrays(p)["hid"] for p in sorted((local_scores / "features").glob("*.safetensors"))])
    assert np.allclose(hid[: len(positions)], ctx.features(pool).hid, atol=1e-4)
    assert set(frame.loc[frame["reason"].notna(), "position"]) == {150, 151}


def test_shards_in_one_selection_out(files, fitted, local_scores, tmp_path):
    _, single, shards = files
    score_pool(shards, fitted, tmp_path / "scores", chunk_rows=25)
    one = select_from_scores(local_scores, tmp_path / "one", {"ratio": 0.2})
    many = select_from_scores(tmp_path / "scores", tmp_path / "many", {"ratio": 0.2})
    counts = many["counts"]
    assert counts["rows_in"] == 153 and counts["rejected"] == 3 and counts["adds_up"]
    assert (
        counts["selected"] + counts["not_selected"] + counts["rejected"]
        == counts["rows_in"]
        == one["counts"]["rows_in"]
    )
    assert counts["selected"] == 30

    def lines(run: Path, name: str) -> list[str]:
        return (run / name).read_text(encoding="utf-8").splitlines()

    assert lines(tmp_path / "one", "selected.jsonl") == lines(tmp_path / "many", "selected.jsonl")
    originals = {r["id"]: r for r in (json.loads(x) for x in single.read_text().splitlines()[:150])}
    assert all(json.loads(x) == originals[json.loads(x)["id"]] for x in lines(tmp_path / "many", "selected.jsonl"))
    reasons = [json.loads(x)["reason"] for x in lines(tmp_path / "many", "rejected.jsonl")]
    assert reasons[0].startswith("c.jsonl row 0 (line 1): not valid JSON")
    assert "field 'output' is missing" in reasons[1]
    assert (
        reasons[2].startswith("c.jsonl row 2 (line 3): field 'id': duplicate id")
        and "first seen at a.jsonl row 3" in reasons[2]
    )


def test_one_command_select_on_shards(files, tiny_model, tmp_path):
    root, _, shards = files
    manifest = run_streaming(config(tiny_model, root / "seeds.yaml"), shards, tmp_path / "run", chunk_rows=50)
    assert manifest["counts"]["adds_up"] and manifest["counts"]["rows_in"] == 153
    assert (tmp_path / "run" / "manifest.json").exists() and (tmp_path / "run" / "fitted" / "select.json").exists()


def test_ray_two_workers_select_as_local(files, fitted, local_scores, tmp_path):
    """Ray actors without GPUs (--gpus-per-worker 0, the CPU path) read their blocks of the one
    JSON lines file from byte offsets and give the local selection; a rerun scores only what is
    missing."""
    pytest.importorskip("ray")
    _, single, _ = files
    out = tmp_path / "scores-ray"
    score_pool(single, fitted, out, executor="ray", workers=2, threads=1, gpus_per_worker=0, chunk_rows=40)
    local = select_from_scores(local_scores, tmp_path / "local", {"count": 25, "strategy": "overall"})
    ray_run = select_from_scores(out, tmp_path / "ray", {"count": 25, "strategy": "overall"})
    assert local["counts"] == ray_run["counts"]
    selected = [(tmp_path / r / "selected.jsonl").read_bytes() for r in ("local", "ray")]
    assert selected[0] == selected[1]
    a, b = gather(ScoreFolder(local_scores)), gather(ScoreFolder(out))
    assert np.allclose(a["score"], b["score"], atol=1e-5, equal_nan=True)

    # resumable per block: only the missing block is scored again
    blocks = sorted((out / "blocks").glob("*.parquet"))
    kept = {p.name: p.stat().st_mtime_ns for p in blocks[1:]}
    blocks[0].unlink()
    (out / "complete.json").unlink()
    args = ["score", str(single), "--fitted", str(fitted), "--out", str(out), "--chunk-rows", "40"]
    result = CliRunner().invoke(app, [*args, "--executor", "ray", "--workers", "2", "--gpus-per-worker", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "complete.json").read_text())
    assert summary["scored_now"] == 1 and summary["executor"] == "ray" and summary["workers"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in sorted((out / "blocks").glob("*.parquet"))[1:]} == kept
    pd.testing.assert_frame_equal(gather(ScoreFolder(out)), b)


def test_parquet_and_datasets_pools_select_as_jsonl(fitted, real_rows, tmp_path):
    """The same rows as one JSON lines file, as Parquet row groups and as a `datasets` folder of
    two Arrow files: the same selection, and the same reasons for the same rejected rows."""
    import datasets

    rows = [{k: r.get(k) for k in ("id", "instruction", "input", "output")} for r in real_rows[:150]]
    rows += [{"id": "no-output", "instruction": "Say hi", "input": None, "output": None}, rows[3]]
    pools = {
        "jsonl": write_jsonl(tmp_path / "pool.jsonl", rows),
        "parquet": tmp_path / "pool.parquet",
        "datasets": tmp_path / "ds",
    }
    pq.write_table(pa.Table.from_pylist(rows), pools["parquet"], row_group_size=40)
    datasets.Dataset.from_list(rows).save_to_disk(str(pools["datasets"]), num_shards=2)
    runs = {}
    for name, pool in pools.items():
        score_pool(pool, fitted, tmp_path / f"scores-{name}", chunk_rows=25)
        runs[name] = select_from_scores(tmp_path / f"scores-{name}", tmp_path / name, {"ratio": 0.2})
        assert runs[name]["counts"]["rows_in"] == 152 and runs[name]["counts"]["rejected"] == 2

    def outputs(name: str) -> tuple[bytes, list[tuple[int, str]]]:
        rejected = [json.loads(x) for x in (tmp_path / name / "rejected.jsonl").read_text().splitlines()]
        problems = [(r["position"], r["reason"].split(": ", 1)[1].split(" (first seen")[0]) for r in rejected]
        return (tmp_path / name / "selected.jsonl").read_bytes(), problems

    expected = outputs("jsonl")
    duplicate = f"field 'id': duplicate id '{rows[3]['id']}'"
    assert expected[1] == [(150, "field 'output' is missing"), (151, duplicate)]
    assert outputs("parquet") == expected and outputs("datasets") == expected
    reasons = (tmp_path / "datasets" / "rejected.jsonl").read_text()
    assert "data-00001-of-00002.arrow row 74: field 'output' is missing" in reasons


def test_a_ray_fit_task_fits_what_the_driver_fits(files, fitted, tiny_model, tmp_path):
    """The task `--executor ray --gpus G` sends the fit to (here without a GPU): same fitted state."""
    ray = pytest.importorskip("ray")
    from daar.scale.ray_executor import _fit_task

    root, single, _ = files
    settings = config(tiny_model, root / "seeds.yaml").model_dump(mode="json")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_fit_task)
        summary = ray.get(task.remote(settings, str(single), str(tmp_path / "fitted"), None))
    finally:
        ray.shutdown()
    assert summary["probe_rows"] == json.loads((fitted / "fit.json").read_text())["probe_rows"]
    files_of = [json.loads((f / "daar.json").read_text())["files"] for f in (fitted, tmp_path / "fitted")]
    assert files_of[0] == files_of[1]


def test_resume_after_the_scorer_is_killed(files, fitted, local_scores, tmp_path):
    _, single, _ = files
    out = tmp_path / "scores"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "daar", "score", str(single), "--fitted", str(fitted), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--chunk-rows", "2"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "blocks").glob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in (out / "blocks").glob("*.parquet")}
    assert 0 < len(done) < 77 and not (out / "complete.json").exists()
    with pytest.raises(UserError, match="not a finished scores folder"):
        select_from_scores(out, tmp_path / "run")
    summary = score_pool(single, fitted, out, chunk_rows=2)
    assert summary["blocks"] == 77 and summary["scored_now"] == 77 - len(done)
    assert {p: (out / "blocks" / p).stat().st_mtime_ns for p in done} == done
    resumed, whole = gather(ScoreFolder(out)), gather(ScoreFolder(local_scores))
    assert np.allclose(resumed["score"], whole["score"], atol=1e-5, equal_nan=True)
    assert list(resumed["id"]) == list(whole["id"])


def test_ray_run_survives_a_killed_actor(files, fitted, local_scores, tmp_path):
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    _, single, _ = files
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("RAY_ADDRESS", None)
    # A run can finish before the loop below sees an actor and a written block (a loaded machine
    # polls slowly); such a run proves nothing, so it is repeated in a new folder, up to 3 times.
    for attempt in range(3):
        out = tmp_path / f"scores-{attempt}"
        cmd = [sys.executable, "-m", "daar", "score", str(single), "--fitted", str(fitted), "--out", str(out)]
        proc = subprocess.Popen([*cmd, "--chunk-rows", "2", "--executor", "ray", "--workers", "2"], env=env)
        try:
            deadline, killed = time.monotonic() + 180, None
            while killed is None and proc.poll() is None and time.monotonic() < deadline:
                started = list((out / "blocks").glob("*.parquet"))
                actors = [p for p in psutil.Process(proc.pid).children(recursive=True) if _is_scorer(p, psutil)]
                if actors and started:
                    killed = actors[0]
                    killed.kill()
                time.sleep(0.05)
            assert proc.wait(timeout=300) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if killed is not None:
            break
    assert killed is not None, "no scoring actor was found to kill in 3 runs"
    assert (out / "complete.json").exists()
    resumed, whole = gather(ScoreFolder(out)), gather(ScoreFolder(local_scores))
    assert list(resumed["id"]) == list(whole["id"])
    assert np.allclose(resumed["score"], whole["score"], atol=1e-5, equal_nan=True)


def _is_scorer(process, psutil) -> bool:
    try:
        return "_RayScorer" in " ".join(process.cmdline())
    except psutil.Error:  # it ended between listing and looking
        return False
