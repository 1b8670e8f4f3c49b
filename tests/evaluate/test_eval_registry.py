"""Task registry, data folder resolution and the seeded subsamples of the local files."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from daar.evaluate.registry import (
    TASKS,
    EvalError,
    get_task,
    load_fewshot_rows,
    load_task_rows,
    parse_tasks,
    resolve_data_dir,
    select_rows,
)

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "bench"))


@pytest.fixture(scope="module")
def bench_dir() -> Path:
    if not (BENCH / "nq_open.jsonl.gz").exists():
        pytest.skip(f"benchmark files not found at {BENCH}")
    return BENCH


def test_registry_has_the_paper_sizes() -> None:
    sizes = {name: spec.size for name, spec in TASKS.items()}
    assert sizes == {
        "nq": 3610,
        "triviaqa": 5000,
        "hellaswag": 10042,
        "gsm8k": 500,
        "math": 1000,
        "mbpp": 500,
        "humaneval": 164,
        "mmlu": None,
    }


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(EvalError, match="Did you mean 'gsm8k'.*Known tasks: nq"):
        get_task("gsm8")
    with pytest.raises(EvalError, match="unknown task 'xyz'"):
        parse_tasks("nq,xyz")
    with pytest.raises(EvalError, match="no task"):
        parse_tasks(" , ")


def test_parse_tasks_all_and_duplicates() -> None:
    assert [s.name for s in parse_tasks("all")] == list(TASKS)
    assert [s.name for s in parse_tasks(["NQ", "nq", " mmlu "])] == ["nq", "mmlu"]


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    from_env = tmp_path / "env"
    from_env.mkdir()
    walked = tmp_path / "repo" / "shared" / "data" / "bench"
    walked.mkdir(parents=True)
    deep = tmp_path / "repo" / "main" / "src"
    deep.mkdir(parents=True)
    monkeypatch.setenv("DAAR_BENCH_DIR", str(from_env))
    assert resolve_data_dir(explicit, start=deep) == explicit
    assert resolve_data_dir(None, start=deep) == from_env
    monkeypatch.delenv("DAAR_BENCH_DIR")
    assert resolve_data_dir(None, start=deep) == walked
    with pytest.raises(EvalError, match="no benchmark folder found"):
        resolve_data_dir(None, start=tmp_path)
    with pytest.raises(EvalError, match="does not exist"):
        resolve_data_dir(tmp_path / "missing")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="gsm8k_test.jsonl.gz is missing"):
        load_task_rows(get_task("gsm8k"), tmp_path, limit=2)


def test_broken_file_is_reported(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "nq_open.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"question": "q", "answers": ["a"]}) + "\n{broken\n")
    with pytest.raises(EvalError, match="cannot read line 2"):
        load_task_rows(get_task("nq"), tmp_path)


def test_select_rows_is_seeded_and_nested() -> None:
    rows = [{} for _ in range(100)]
    first = select_rows(rows, 30, None, 42)
    assert first == select_rows(rows, 30, None, 42)
    assert first != select_rows(rows, 30, None, 7)
    assert select_rows(rows, 30, 5, 42) == first[:5]
    assert len(select_rows(rows, None, None, 42)) == 100


@pytest.mark.parametrize("name", list(TASKS))
def test_each_task_reads_its_file(bench_dir: Path, name: str) -> None:
    spec = get_task(name)
    rows = load_task_rows(spec, bench_dir, limit=3)
    assert len(rows) == 3
    if name == "mbpp":
        assert all(11 <= r["task_id"] <= 510 for r in rows)
        shots = load_fewshot_rows(spec, bench_dir)
        assert [s["task_id"] for s in shots[:3]] == [2, 3, 4]
    if name == "mmlu":
        assert len({r["subject"] for r in rows}) > 1  # a seeded shuffle, not the first subject
        assert len(load_fewshot_rows(spec, bench_dir)) == 285
