"""The code sandbox: limits, isolation of files and environment, HumanEval/MBPP verdicts."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from daar.evaluate.metrics import humaneval_program, mbpp_program
from daar.evaluate.sandbox import run_python

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "bench"))


def _first_rows(name: str, count: int) -> list[dict]:
    path = BENCH / name
    if not path.exists():
        pytest.skip(f"benchmark file not found: {path}")
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == count:
                break
    return rows


def test_clean_program_passes_and_prints() -> None:
    result = run_python("print(6 * 7)")
    assert result.passed and result.stdout == "42\n"


def test_failing_assert_fails() -> None:
    result = run_python("assert 1 == 2, 'nope'")
    assert result.status == "failed" and "AssertionError" in result.stderr


def test_infinite_loop_is_killed() -> None:
    result = run_python("while True:\n    pass\n", timeout=1.5)
    assert result.status == "timeout"
    assert result.seconds < 5


def test_sleeping_child_is_killed_by_wall_clock() -> None:
    result = run_python("import time\ntime.sleep(60)\n", timeout=1.0)
    assert result.status == "timeout" and result.seconds < 5


def test_memory_hog_is_stopped() -> None:
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50_000_000))\n", memory_mb=300)
    assert result.status == "memory"


def test_cannot_write_outside_its_directory(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("original")
    attempts = {
        "open": f"open({str(tmp_path / 'a.txt')!r}, 'w').write('x')",
        "os.open": f"import os\nos.open({str(tmp_path / 'b.txt')!r}, os.O_WRONLY | os.O_CREAT)",
        "pathlib": f"import pathlib\npathlib.Path({str(tmp_path / 'c.txt')!r}).write_text('x')",
        "remove": f"import os\nos.remove({str(victim)!r})",
        "append": f"open({str(victim)!r}, 'a').write('x')",
        "escape": "open('../escaped.txt', 'w').write('x')",
        "shell": f"import os\nos.system('touch {tmp_path / 'd.txt'}')",
        "subprocess": f"import subprocess\nsubprocess.run(['touch', {str(tmp_path / 'e.txt')!r}])",
    }
    for name, code in attempts.items():
        result = run_python(code)
        assert result.status == "failed", name
        assert "PermissionError" in result.stderr, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert victim.read_text() == "original"


def test_can_write_inside_and_directory_is_removed() -> None:
    code = (
        "import os, pathlib, tempfile\n"
        "pathlib.Path('notes.txt').write_text('hi')\n"
        "with tempfile.NamedTemporaryFile('w', delete=False) as f:\n    f.write('x')\n"
        "assert os.path.expanduser('~') == os.getcwd()\n"
        "print(os.getcwd())\n"
    )
    result = run_python(code)
    assert result.passed, result.stderr
    workdir = Path(result.stdout.strip())
    assert workdir.name.startswith("daar-sandbox-")
    assert not workdir.exists()


def test_sees_no_secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAAR_TEST_SECRET", "s3cr3t-value")
    monkeypatch.setenv("HF_TOKEN", "hf_should_not_leak")
    result = run_python("import os\nprint(sorted(os.environ))\nprint(list(os.environ.values()))")
    assert result.passed
    assert "s3cr3t-value" not in result.stdout and "hf_should_not_leak" not in result.stdout
    assert "DAAR_TEST_SECRET" not in result.stdout
    assert "'PATH'" in result.stdout


def test_endless_output_is_capped() -> None:
    result = run_python("while True:\n    print('x' * 1000)\n", timeout=5, file_mb=1)
    assert result.status in ("failed", "timeout")
    assert len(result.stdout) <= 64 * 1024


def test_humaneval_canonical_passes_and_wrong_fails() -> None:
    for row in _first_rows("humaneval.jsonl.gz", 3):
        right = run_python(humaneval_program(row["canonical_solution"], row))
        assert right.passed, (row["task_id"], right.stderr[-500:])
        wrong = run_python(humaneval_program("    return None\n", row))
        assert wrong.status == "failed", row["task_id"]
        broken = run_python(humaneval_program("    return (\n", row))
        assert broken.status == "failed" and "SyntaxError" in broken.stderr


def test_mbpp_reference_code_passes() -> None:
    rows = [r for r in _first_rows("mbpp.jsonl.gz", 14) if r["task_id"] >= 11]
    for row in rows:
        assert run_python(mbpp_program(row["code"], row)).passed, row["task_id"]
        assert not run_python(mbpp_program("def nothing():\n    pass\n", row)).passed
