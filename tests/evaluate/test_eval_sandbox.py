"""The code sandbox: verdicts, limits, HumanEval/MBPP programs, barrier availability, process mode.

Hostile programs (escape attempts, exit tricks, fork bombs) are in test_sandbox_hostile.py.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daar.evaluate.metrics import humaneval_program, mbpp_program
from daar.evaluate.sandbox import barrier_available, run_python

BENCH = Path(os.environ.get("DAAR_BENCH_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "bench"))
SRC = Path(__file__).resolve().parents[2] / "src"


def _rows(name: str, count: int | None = None, ids: tuple = ()) -> list[dict]:
    """The first `count` rows of a benchmark file, or the rows whose task_id is in `ids`."""
    path = BENCH / name
    if not path.exists():
        pytest.skip(f"benchmark file not found: {path}")
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["task_id"] in ids or (count is not None and len(rows) < count):
                rows.append(row)
            if count is not None and len(rows) == count:
                break
    return rows


def _namespace_prerequisites() -> bool:
    try:
        allowed = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        return False
    return sys.platform.startswith("linux") and shutil.which("unshare") is not None and allowed > 0


def test_barrier_is_available_where_linux_allows_it() -> None:
    """Guards against CI silently skipping the hostile suite: where the kernel allows user
    namespaces, the barrier must come up."""
    if not _namespace_prerequisites():
        pytest.skip("no unshare or user namespaces disabled: the barrier cannot be expected here")
    available, reason = barrier_available()
    assert available, reason


def test_clean_program_passes_and_prints() -> None:
    result = run_python("print(6 * 7)")
    assert result.passed and result.stdout == "42\n"


def test_failing_assert_fails() -> None:
    result = run_python("assert 1 == 2, 'nope'")
    assert result.status == "failed" and "AssertionError" in result.stderr
    assert "_sandbox_launcher" not in result.stderr  # the traceback shows only the program


def test_exit_zero_before_the_end_is_not_a_pass() -> None:
    for ending in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "exit()", "raise SystemExit(0)"):
        result = run_python(f"print('start')\n{ending}\nprint('end')\n")
        assert result.status == "failed" and result.returncode == 0, ending
        assert "ended before its last statement" in result.stderr


def test_no_python_runs_between_fork_and_exec_in_the_evaluator() -> None:
    """With `preexec_fn`, CPython takes the import lock before forking, so a thread holding it (or
    any lock the callback needs) stalls or deadlocks every run. The launcher needs none of that."""
    import _imp

    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        _imp.acquire_lock()
        try:
            ready.set()
            release.wait(10)
        finally:
            _imp.release_lock()

    holder = threading.Thread(target=hold)
    holder.start()
    ready.wait()
    try:
        start = time.perf_counter()
        result = run_python("print(1)")
        elapsed = time.perf_counter() - start
    finally:
        release.set()
        holder.join()
    assert result.passed and elapsed < 3


def test_many_runs_at_once_from_threads() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: run_python(f"print({i} * 2)"), range(24)))
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(24)]


def test_other_interpreters_run_with_their_standard_library() -> None:
    """A venv link or a pyenv shim cannot run inside the sandbox; the real binary and its prefix are."""
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    for python in dict.fromkeys(p for p in candidates if p and os.path.exists(p)):
        result = run_python("import heapq, decimal, json\nprint(heapq.nsmallest(1, [3, 1]))", python=python)
        assert result.passed and result.stdout == "[1]\n", (python, result.stderr[-300:])
    with pytest.warns(RuntimeWarning, match="nonexistent"):
        missing = run_python("print(1)", python="/nonexistent/python3")
    assert missing.status == "error" and "nonexistent" in missing.stderr


def test_infinite_loop_is_killed() -> None:
    result = run_python("while True:\n    pass\n", timeout=1.5)
    assert result.status == "timeout"
    assert result.seconds < 5


def test_sleeping_child_is_killed_by_wall_clock() -> None:
    result = run_python("import time\ntime.sleep(60)\n", timeout=1.0)
    assert result.status == "timeout" and result.seconds < 5


def test_cpu_limit_is_a_timeout() -> None:
    result = run_python("while True:\n    pass\n", timeout=10, cpu_seconds=1)
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
        "shell": f"import os\nassert os.system('touch {tmp_path / 'd.txt'}') == 0",
        "subprocess": f"import subprocess\nsubprocess.run(['touch', {str(tmp_path / 'e.txt')!r}], check=True)",
    }
    for name, code in attempts.items():
        result = run_python(code)
        assert result.status == "failed", (name, result)
        assert "Error" in result.stderr, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert victim.read_text() == "original"


def test_can_write_inside_its_private_directory() -> None:
    code = (
        "import os, pathlib, tempfile\n"
        "pathlib.Path('notes.txt').write_text('hi')\n"
        "with tempfile.NamedTemporaryFile('w', delete=False) as f:\n    f.write('x')\n"
        "assert os.path.expanduser('~') == os.getcwd() == tempfile.gettempdir() == '/sandbox'\n"
        "assert pathlib.Path('notes.txt').read_text() == 'hi'\n"
    )
    result = run_python(code)
    assert result.passed, result.stderr


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
    for row in _rows("humaneval.jsonl.gz", 3):
        right = run_python(humaneval_program(row["canonical_solution"], row))
        assert right.passed, (row["task_id"], right.stderr[-500:])
        wrong = run_python(humaneval_program("    return None\n", row))
        assert wrong.status == "failed", row["task_id"]
        broken = run_python(humaneval_program("    return (\n", row))
        assert broken.status == "failed" and "SyntaxError" in broken.stderr


def test_humaneval_whole_function_keeps_the_prompts_helpers() -> None:
    """HumanEval/10, /38 and /50 define helpers before the entry point; the canonical solutions of
    /10 and /38 call them, and /38's `check` calls `encode_cyclic` itself."""
    rows = _rows("humaneval.jsonl.gz", ids=("HumanEval/10", "HumanEval/38", "HumanEval/50"))
    assert len(rows) == 3
    for row in rows:
        signature = row["prompt"][row["prompt"].index(f"def {row['entry_point']}(") :].splitlines()[0]
        whole = f"Here it is:\n```python\n{signature}\n{row['canonical_solution']}```\n"
        program = humaneval_program(whole, row)
        assert program.count(f"def {row['entry_point']}(") == 1
        result = run_python(program)
        assert result.passed, (row["task_id"], result.stderr[-800:])
        wrong = run_python(humaneval_program(f"```python\n{signature}\n    return ''\n```", row))
        assert wrong.status == "failed", row["task_id"]


def test_mbpp_reference_code_passes() -> None:
    rows = [r for r in _rows("mbpp.jsonl.gz", 14) if r["task_id"] >= 11]
    for row in rows:
        assert run_python(mbpp_program(row["code"], row)).passed, row["task_id"]
        assert not run_python(mbpp_program("def nothing():\n    pass\n", row)).passed


def test_mbpp_wrong_solution_that_exits_early_fails() -> None:
    row = _rows("mbpp.jsonl.gz", 14)[-1]
    name = row["test_list"][0].split("assert ")[1].split("(")[0].strip()
    for ending in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "quit()", "raise SystemExit(0)"):
        program = mbpp_program(f"def {name}(*args):\n    return None\n{ending}\n", row)
        assert run_python(program).status == "failed", ending


# ---------------------------------------------------------------- without the barrier


def test_invalid_mode_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAAR_SANDBOX", "none")
    with pytest.warns(RuntimeWarning):
        result = run_python("print(1)")
    assert result.status == "error" and "DAAR_SANDBOX" in result.stderr


def test_process_mode_is_an_explicit_weaker_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DAAR_SANDBOX", "process")
    clean = run_python("import os\nprint(os.getcwd())")
    assert clean.passed and clean.mode == "process"
    workdir = Path(clean.stdout.strip())
    assert workdir.name == "work" and workdir.parent.name.startswith("daar-sandbox-")
    assert not workdir.exists()
    assert run_python("import sys\nsys.exit(0)\n").status == "failed"
    guarded = run_python(f"open({str(tmp_path / 'x')!r}, 'w')")
    assert guarded.status == "failed" and "PermissionError" in guarded.stderr
    assert run_python("while True:\n    pass\n", timeout=1).status == "timeout"


def test_missing_namespaces_are_an_error_not_a_silent_downgrade() -> None:
    """In a user namespace whose max_user_namespaces is 0 the barrier cannot be built: run_python
    says so (status "error" with the reason and the opt-out), and process mode still runs."""
    if not _namespace_prerequisites():
        pytest.skip("needs unshare and user namespaces to build the restricted environment")
    script = (
        "import json, os\n"
        "from daar.evaluate.sandbox import barrier_available, run_python\n"
        "strict = run_python('print(1)')\n"
        "os.environ['DAAR_SANDBOX'] = 'process'\n"
        "weak = run_python('print(1)')\n"
        "print(json.dumps([barrier_available(), strict.status, strict.stderr, weak.status]))\n"
    )
    shell = f'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -W ignore -c {_quote(script)}'
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("DAAR_SANDBOX", None)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", shell, sys.executable],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    (available, reason), strict_status, strict_stderr, weak_status = json.loads(done.stdout.splitlines()[-1])
    assert not available and "max_user_namespaces" in reason
    assert strict_status == "error" and "unshare" in strict_stderr and "DAAR_SANDBOX=process" in strict_stderr
    assert weak_status == "passed"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
