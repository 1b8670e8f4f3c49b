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

from daar.evaluate.kinds import get_kind
from daar.evaluate.metrics import CodeCheck, humaneval_check, mbpp_check
from daar.evaluate.registry import get_task
from daar.evaluate.sandbox import SandboxResult, barrier_available, run_python

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


def _run(check: CodeCheck) -> SandboxResult:
    """As the evaluator runs a benchmark item: the code, then its tests in their own namespace."""
    return run_python(check.code, tests=check.tests, shared=check.shared)


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
        # another interpreter imports the launcher's modules from their folder instead of our compiled code
        judged = [run_python(f"def f(x):\n    return {answer}\n", tests="assert f(2) == 4\n", python=python)
                  for answer in ("x * 2", "x")]
        assert [r.status for r in judged] == ["passed", "failed"], (python, judged[0].stderr[-300:])
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
    assert result.detail.startswith("CPU limit of 1 s (used ")


def test_memory_hog_is_stopped() -> None:
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50_000_000))\n", memory_mb=300)
    assert result.status == "memory" and result.detail == "MemoryError (limit 300 MiB per process)"


def test_a_memory_error_in_a_forked_child_is_not_the_programs_verdict() -> None:
    code = "import os\nif os.fork() == 0:\n    bytearray(8 * 1024 ** 3)\nos.wait()\nprint('parent done')\n"
    result = run_python(code, memory_mb=256)
    assert result.status == "passed" and result.stdout == "parent done\n", result.stderr


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
        right = _run(humaneval_check(row["canonical_solution"], row))
        assert right.passed, (row["task_id"], right.stderr[-500:])
        wrong = _run(humaneval_check("    return None\n", row))
        assert wrong.status == "failed", row["task_id"]
        broken = _run(humaneval_check("    return (\n", row))
        assert broken.status == "failed" and "SyntaxError" in broken.stderr


def test_humaneval_whole_function_keeps_the_prompts_helpers() -> None:
    """HumanEval/10, /38 and /50 define helpers before the entry point; the canonical solutions of
    /10 and /38 call them, and /38's `check` calls `encode_cyclic` itself."""
    rows = _rows("humaneval.jsonl.gz", ids=("HumanEval/10", "HumanEval/38", "HumanEval/50"))
    assert len(rows) == 3
    for row in rows:
        signature = row["prompt"][row["prompt"].index(f"def {row['entry_point']}(") :].splitlines()[0]
        whole = f"Here it is:\n```python\n{signature}\n{row['canonical_solution']}```\n"
        check = humaneval_check(whole, row)
        assert check.code.count(f"def {row['entry_point']}(") == 1
        result = _run(check)
        assert result.passed, (row["task_id"], result.stderr[-800:])
        wrong = _run(humaneval_check(f"```python\n{signature}\n    return ''\n```", row))
        assert wrong.status == "failed", row["task_id"]


WRONG_32 = "    return 0.0\n"
PATCHES_32 = {  # a wrong HumanEval/32 answer, and what it changes so that `check` passes anyway
    "module attribute": WRONG_32 + "\n\nimport math\nmath.fabs = lambda x: 0.0\n",
    "module attribute during the call": "    import math\n    math.fabs = lambda x: 0.0\n    return 0.0\n",
    "builtin": WRONG_32 + "\n\nimport builtins, math\nbuiltins.abs = lambda x: 0.0\nmath.fabs = abs\n",
    "prompt helper": WRONG_32 + "\n\ndef poly(xs, x):\n    return 0.0\n",
    "sys.modules entry": WRONG_32 + "\n\nimport math, sys, types\nfake = types.ModuleType('math')\n"
    "fake.__dict__.update(vars(math), fabs=lambda x: 0.0)\nsys.modules['math'] = fake\n",
    "every math module found by gc": WRONG_32 + "\n\nimport gc, sys, types\n"
    "for found in gc.get_objects() + list(sys.modules.values()):\n"
    "    if isinstance(found, types.ModuleType) and found.__name__ == 'math':\n        found.fabs = lambda x: 0.0\n",
}


@pytest.mark.parametrize("patch", PATCHES_32)
def test_humaneval_32_wrong_answer_that_patches_what_check_uses_fails(patch: str) -> None:
    """Issue 19: `import math; math.fabs = lambda x: 0.0` made a wrong HumanEval/32 answer pass.
    Scored as the evaluator scores it, `check` runs in the launcher, on modules the answer never had."""
    (row,) = _rows("humaneval.jsonl.gz", ids=("HumanEval/32",))
    spec = get_task("humaneval")
    assert get_kind(spec.kind).score(row, row["canonical_solution"], lambda check: _run(check).passed)["pass_at_1"] == 1
    assert get_kind(spec.kind).score(row, PATCHES_32[patch], lambda check: _run(check).passed) == {"pass_at_1": 0.0}


def test_humaneval_answer_equal_to_everything_fails() -> None:
    """Issue 26: `check` compares with ==, which an answer's object could define to be always true;
    the launcher's `check` only ever sees plain data rebuilt by the launcher."""
    (row,) = _rows("humaneval.jsonl.gz", ids=("HumanEval/0",))
    answer = "    class Anything:\n        def __eq__(self, other):\n            return True\n    return Anything()\n"
    result = _run(humaneval_check(answer, row))
    assert (result.status, result.detail) == ("failed", "has_close_elements() returned a 'Anything' object, which "
                                              "is not plain data")


def test_mbpp_reference_code_passes() -> None:
    rows = [r for r in _rows("mbpp.jsonl.gz", 14) if r["task_id"] >= 11]
    # a function named `sum`, setup code building the code's own objects (`Node`), `sys` from the code, a type
    # as an argument, a list of the code's objects (`Pair`), a Counter, a defaultdict and complex numbers returned
    rows += _rows("mbpp.jsonl.gz", ids=(126, 367, 596, 533, 601, 40, 653, 590))
    for row in rows:
        assert _run(mbpp_check(row["code"], row)).passed, row["task_id"]
        assert not _run(mbpp_check("def nothing():\n    pass\n", row)).passed


def test_mbpp_wrong_solution_that_exits_early_fails() -> None:
    row = _rows("mbpp.jsonl.gz", 14)[-1]
    name = row["test_list"][0].split("assert ")[1].split("(")[0].strip()
    for ending in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "quit()", "raise SystemExit(0)"):
        check = mbpp_check(f"def {name}(*args):\n    return None\n{ending}\n", row)
        assert _run(check).status == "failed", ending


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
    killed = run_python("import signal\nsignal.raise_signal(signal.SIGKILL)\n")  # the guard refuses os.kill
    assert (killed.status, killed.detail) == ("failed", "killed by signal SIGKILL")
    fake = run_python("import os\nos.write(2, b'daar-sandbox-setup: x\\n')\nos._exit(125)\n")
    assert (fake.status, fake.detail) == ("failed", "exit 125")
    refused = (
        "import ctypes, errno, socket\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.socket(40, socket.SOCK_STREAM, 0) == -1 and ctypes.get_errno() == errno.EAFNOSUPPORT\n"
        "assert libc.syscall(425, 4, ctypes.create_string_buffer(120)) == -1 and ctypes.get_errno() == errno.EPERM\n"
    )
    assert run_python(refused).passed  # the same system call filter as the namespace mode
    tests = "assert add(1, 2) == 3\n"  # the tests run in the launcher here too
    assert run_python("def add(a, b):\n    return a + b\n", tests=tests).passed
    equal = "class Anything:\n    def __eq__(self, other):\n        return True\n"
    equal += "def add(a, b):\n    return Anything()\n"
    assert "not plain data" in run_python(equal, tests=tests).detail


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


def test_a_setup_failure_of_the_program_process_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The program process reports its own setup failures on a channel closed before the program
    starts (a program that prints the same words is only "failed", see the hostile corpus). Here its
    working folder is missing, so its chdir fails; the warning does not blame user namespaces."""
    from daar.evaluate import sandbox

    launch_args = sandbox._launch_args
    monkeypatch.setattr(sandbox, "_launch_args", lambda *a: [*launch_args(*a), f"work={tmp_path / 'gone'}"])
    monkeypatch.setenv("DAAR_SANDBOX", "process")
    with pytest.warns(RuntimeWarning, match="FileNotFoundError") as warned:
        result = run_python("print(1)")
    assert (result.status, result.detail) == ("error", "sandbox error") and "gone" in result.stderr
    assert "user namespaces" not in str(warned[0].message)
