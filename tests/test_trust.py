"""Outputs a user can trust: killed runs resume to the same bytes, same seed gives same bytes, a
folder is never shared by two processes, never looks finished when it is not, and the row
accounting is checked against the files (and fails when they disagree)."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import POOL

from daar.write import AccountingError, account

DOMAINS = [
    {"name": "math", "description": "arithmetic and algebra word problems"},
    {"name": "code", "description": "writing and fixing Python programs"},
    {"name": "trivia", "description": "general knowledge about the world"},
]
SEEDS = {
    "math": [{"instruction": "What is 12 times 7?", "output": "84"}, {"instruction": "Solve 3x = 9.", "output": "3"}],
    "code": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def r(s):\n    return s[::-1]"},
        {"instruction": "Print 1 to 3 in Python.", "output": "for i in range(1, 4):\n    print(i)"},
    ],
    "trivia": [
        {"instruction": "Capital of France?", "output": "Paris."},
        {"instruction": "Who wrote Hamlet?", "output": "Shakespeare."},
    ],
}
RUN = "from daar.cli import main; main()"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    if not POOL.exists():
        pytest.skip(f"shared pool not found at {POOL}")
    folder = tmp_path_factory.mktemp("trust")
    lines = []
    with gzip.open(POOL, "rt", encoding="utf-8") as handle:
        for line in handle:
            lines.append(line)
            if len(lines) == 1200:
                break
    lines.insert(7, '{"id": "broken", "instruction": \n')  # one bad row, to be accounted for
    (folder / "pool.jsonl").write_text("".join(lines), encoding="utf-8")
    (folder / "domains.yaml").write_text(yaml.safe_dump(DOMAINS), encoding="utf-8")
    (folder / "seeds.yaml").write_text(yaml.safe_dump(SEEDS), encoding="utf-8")
    return {
        "pool": folder / "pool.jsonl",
        "domains": folder / "domains.yaml",
        "seeds": folder / "seeds.yaml",
        "model": tiny_model,
    }


def select_args(inputs: dict[str, Path], out: Path) -> list[str]:
    return [
        sys.executable, "-c", RUN, "select", str(inputs["pool"]), "--out", str(out), "--model", str(inputs["model"]),
        "--domains", str(inputs["domains"]), "--examples-file", str(inputs["seeds"]), "--probe-size", "400",
        "--batch-tokens", "256", "--device", "cpu", "--set", "heads.val_fraction=0.1",
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env(), timeout=timeout)


def outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("selected.jsonl", "scores.parquet", "rejected.jsonl")}


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("reference")
    start = time.perf_counter()
    done = run(select_args(inputs, out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out, time.perf_counter() - start


def test_same_seed_twice_gives_identical_files(inputs, reference, tmp_path):
    again = run(select_args(inputs, tmp_path / "again"))  # its own folder and cache: nothing shared
    assert again.returncode == 0, again.stderr
    assert outputs(tmp_path / "again") == outputs(reference[0])
    counts = json.loads((reference[0] / "manifest.json").read_text())["counts"]
    assert counts == {**account(reference[0], 1201), "sampled_out": 0, "scored": 1200}
    assert counts["rejected"] == 1 and counts["selected"] == 240


def test_killed_ten_times_then_resumed_gives_identical_files(inputs, reference, tmp_path):
    out = tmp_path / "killed"
    wall = reference[1]
    rng = random.Random(1234)
    moments = sorted(rng.uniform(0.3, wall) for _ in range(10))
    for moment in moments:
        proc = subprocess.Popen(
            select_args(inputs, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()
        )
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # whatever moment it died at, a folder with a manifest is complete and adds up
        if (out / "manifest.json").exists():
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["counts"]["selected"] == account(out, 1201)["selected"]
    final = run(select_args(inputs, out))
    assert final.returncode == 0, final.stderr
    assert outputs(out) == outputs(reference[0])


def test_a_second_process_on_the_same_folder_refuses(inputs, tmp_path):
    out = tmp_path / "busy"
    hold = (
        "from daar.utils.lock import folder_lock\nimport time\n"
        f"with folder_lock({str(out)!r}, 'test holder'):\n    print('locked', flush=True)\n    time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = run(select_args(inputs, out))
        assert second.returncode == 2
        assert f"in use by another daar process (pid {holder.pid}, test holder" in " ".join(
            (second.stdout + second.stderr).split()
        )
        assert not (out / "selected.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(select_args(inputs, out)).returncode == 0  # a dead holder leaves no lock behind


def test_a_rerun_never_mixes_with_the_earlier_run(inputs, reference, tmp_path, monkeypatch):
    import shutil

    import daar.pipeline
    import daar.write.run
    from daar.config import SelectConfig

    out = tmp_path / "stale"
    shutil.copytree(reference[0], out, ignore=shutil.ignore_patterns("cache"))
    (out / "examples" / "old_domain.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".daar.lock"}
    # a rerun that fails before it has results (a seeds file with an unknown domain) leaves the
    # earlier finished run whole: same files, same bytes
    bad_seeds = tmp_path / "bad_seeds.yaml"
    bad_seeds.write_text(yaml.safe_dump({"math": SEEDS["math"], "nope": SEEDS["code"]}))
    args = select_args(inputs, out)
    args[args.index(str(inputs["seeds"]))] = str(bad_seeds)
    failed = run(args)
    assert failed.returncode == 2 and "unknown domains ['nope']" in failed.stdout + failed.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".daar.lock"} == before
    # a rerun that dies while writing leaves no manifest, and nothing of the earlier run
    config = SelectConfig(
        model=str(inputs["model"]), domains=DOMAINS, examples_file=str(inputs["seeds"]), probe_size=400, device="cpu"
    )

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(daar.write.run, "write_scores", broken)
    with pytest.raises(OSError, match="disk full"):
        daar.pipeline.run_select(config, inputs["pool"], out, report=False)
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == ["rejected.jsonl", "selected.jsonl"], left  # no manifest, no old map or examples


def test_accounting_fails_when_the_files_disagree(reference, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("selected.jsonl", "scores.parquet", "rejected.jsonl"):
        (out / name).write_bytes((reference[0] / name).read_bytes())
    assert account(out, 1201)["adds_up"]
    with pytest.raises(AccountingError, match="cover rows"):
        account(out, 1202)  # a row the files do not mention
    with open(out / "selected.jsonl", "a") as handle:
        handle.write('{"id": "extra"}\n')
    with pytest.raises(AccountingError, match="selected.jsonl has 241 rows but scores.parquet flags 240"):
        account(out, 1201)
    # the right number of rows, but one of them is a row the scores did not select
    lines = (reference[0] / "selected.jsonl").read_text().splitlines()
    scores = pd.read_parquet(out / "scores.parquet")
    unselected = scores.loc[~scores["selected"], "id"].iloc[0]
    pool_rows = {json.loads(line)["id"]: line for line in inputs_pool_lines()}
    (out / "selected.jsonl").write_text("\n".join([pool_rows[unselected], *lines[1:]]) + "\n")
    with pytest.raises(AccountingError, match=f"holds rows the scores do not flag as selected \\(id '{unselected}'\\)"):
        account(out, 1201)
    scores.loc[0, "position"] = scores.loc[1, "position"]  # one row counted twice, another lost
    scores.to_parquet(out / "scores.parquet", index=False)
    (out / "selected.jsonl").write_bytes((reference[0] / "selected.jsonl").read_bytes())
    with pytest.raises(AccountingError, match="exactly once"):
        account(out, 1201)


def inputs_pool_lines() -> list[str]:
    with gzip.open(POOL, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for _, line in zip(range(1200), handle, strict=False)]


def test_fitted_folder_refuses_mixed_files(reference, tmp_path):
    from daar.select.daar import DaarSelector

    fitted = tmp_path / "fitted"
    fitted.mkdir()
    for item in (reference[0] / "fitted").iterdir():
        (fitted / item.name).write_bytes(item.read_bytes())
    assert DaarSelector.load(fitted).domains == ["math", "code", "trivia"]
    (fitted / "reward.safetensors").write_bytes(b"not the same file")
    with pytest.raises(ValueError, match="reward.safetensors does not belong to this fitted state"):
        DaarSelector.load(fitted)
