"""Running model-written code behind an operating-system barrier.

Why: HumanEval and MBPP score a model by running what it wrote. Weak models write code that loops,
allocates without end or exits early; a model tuned against the benchmark can learn to write files,
read secrets or fake a pass. A Python-level guard cannot stop any of this (`io.FileIO`, `posix`,
`ctypes` and subprocesses all reach the kernel directly), so each program runs in fresh user,
mount, network, pid, ipc and uts namespaces built by `_sandbox_launcher.py` with plain kernel calls
(no bwrap or nsjail needed, nothing to install):

- its root is an empty tmpfs, made read-only, holding read-only binds of /usr and the interpreter's
  prefix, four devices, a /proc that shows only its own processes, and a writable /sandbox tmpfs
  (its working directory, size-limited, gone when it ends): writes anywhere else fail in the kernel;
- it runs with every capability dropped, no_new_privs, and as uid 65534 when the evaluator is root
  (so RLIMIT_NPROC applies); it cannot create further user namespaces;
- it has no network interface up, no view of other processes, an environment with only PATH, HOME,
  TMPDIR and LANG, and limits on memory, CPU, file size and process count;
- when it ends or times out, the namespace's init ends and the kernel kills everything it started.

Why a token: exit status 0 does not mean the tests ran (`sys.exit(0)` before the asserts). A pass
needs exit 0 and a per-run token, written to a descriptor only the writer of the verdict holds.

Why the tests run in the launcher: whatever shares an interpreter with the program can be reached by
it (the token in a frame, the tests' modules through `gc`, an object whose `__eq__` is always true).
Benchmark tests given as `tests` run in the launcher, outside the program's pid namespace (the
program cannot see it) and never running its code; each name they take from the program is a
handle, and each call they make is answered by the program process with plain data only (numbers,
strings, lists, tuples, dicts, sets, None, bools), rebuilt by the launcher from its own types. Only
the launcher holds the token and the tests' text. A program run alone (no `tests`) passes by running
to its end, which the program process reports with the token: that verdict a program written
against this harness can forge (docs/SANDBOX.md).

Why each verdict can be trusted: it is derived from what the program cannot forge (docs/SANDBOX.md):
exit status and signal as the kernel reports them to a process outside the program, the CPU time the
kernel counted, the launcher's own deadline, setup errors reported on a channel closed before the
program's first statement, and the token.

Where user namespaces are unavailable the run is an "error" rather than a silent downgrade;
DAAR_SANDBOX=process opts into the old process-only guard, which is not a security boundary.
"""

from __future__ import annotations

import ast
import functools
import marshal
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "memory", "error"]

MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
_OUTPUT_BYTES = 64 * 1024
_LAUNCHER = Path(__file__).with_name("_sandbox_launcher.py")
_MEMORY_MARK = "\nMemoryError"  # appended to the token: the program (or the tests) ended with a MemoryError
_FAILED_MARK = "\nfailed "  # appended to the token by the launcher's judge, then why the tests failed
# The kernel sends SIGXCPU by its scheduler clock; the CPU time wait4 reports was 0.03-0.09 s lower
# at that moment on the development VM (limits of 1-3 s), hence the margin.
_CPU_SHARE = 0.8
_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGSYS}
_HINT = (
    "The sandbox needs Linux user namespaces (check /proc/sys/user/max_user_namespaces > 0, and that "
    "no seccomp or AppArmor policy blocks unshare). To run without the barrier, which is NOT a security "
    "boundary, set DAAR_SANDBOX=process."
)


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program: `passed` only for exit 0 after its last statement ran.
    `detail` says how it ended in words ("exit 1", "killed by signal SIGKILL", "crashed (SIGSEGV)",
    "CPU limit of 5 s", "MemoryError", ...)."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    mode: str = "namespace"
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def sandbox_mode() -> str:
    """"namespace" (the default) or "process" (DAAR_SANDBOX=process); anything else is an error."""
    mode = os.environ.get("DAAR_SANDBOX", "").strip().lower() or "namespace"
    if mode not in ("namespace", "process"):
        raise ValueError(f"DAAR_SANDBOX must be 'namespace' or 'process', got {mode!r}")
    return mode


@functools.cache
def barrier_available() -> tuple[bool, str]:
    """Whether the namespace barrier can be built here, and why not; probed once by a real run."""
    if not sys.platform.startswith("linux"):
        return False, f"the namespace barrier needs Linux, this is {sys.platform}"
    try:
        allowed = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError) as error:
        return False, f"cannot read /proc/sys/user/max_user_namespaces: {error}"
    if allowed <= 0:
        return False, "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    probe = "import os\nassert os.getcwd() == '/sandbox'\n"
    result = _run(probe, "namespace", _Limits(10.0, 256, 10, 1, 4), None, None)
    if not result.passed:
        return False, f"probe run ended {result.status}: {result.stderr.strip()[-500:]}"
    return True, "user, mount, network and pid namespaces work"


@dataclass(frozen=True)
class _Limits:
    timeout: float
    memory_mb: int
    cpu_seconds: int
    file_mb: int
    max_processes: int


def run_python(
    code: str,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    cpu_seconds: int | None = None,
    file_mb: int = 16,
    python: str | None = None,
    max_processes: int = 8,
    tests: str | None = None,
    shared: tuple[str, ...] | None = None,
) -> SandboxResult:
    """Run `code` as a program behind the barrier and report how it ended.

    Status: "passed" (exit 0 after the last statement ran), "failed" (anything else that ended: a
    failing assert, an early exit, a crash or a signal; `detail` says which), "timeout" (the wall or
    CPU limit was reached), "memory" (the program ended with a MemoryError), "error" (the barrier
    could not be built; stderr says why). `memory_mb` is per process and `max_processes` counts
    processes and threads (namespace mode).

    `tests`, if given, runs in the launcher, never in the program's process: the names in `shared`
    (default: every name `tests` reads) that `code` defined are handles there, and every call of one
    is answered by the program with plain data ("failed", with the reason in `detail`, otherwise).
    """
    try:
        mode = sandbox_mode()
    except ValueError as error:
        return _error(str(error), None, "", 0.0, "invalid", hint=False)
    cpu = cpu_seconds if cpu_seconds is not None else max(1, int(timeout + 0.999))
    part = None if tests is None else _TestPart.of(tests, shared)
    return _run(code, mode, _Limits(timeout, memory_mb, cpu, file_mb, max_processes), python, part)


@dataclass(frozen=True)
class _TestPart:
    source: str
    modules: tuple[str, ...]  # standard modules the tests import, or name as `module.attribute`: the judge's own
    shared: tuple[str, ...]  # names the tests take from the program's namespace, as handles

    @classmethod
    def of(cls, source: str, shared: tuple[str, ...] | None) -> _TestPart:
        """Found with `ast`; tests that do not parse get none (they fail with their SyntaxError).
        A module named only as `math.isclose` counts (MBPP's asserts use the code's imports)."""
        try:
            nodes = list(ast.walk(ast.parse(source)))
        except (SyntaxError, ValueError):
            return cls(source, (), tuple(shared or ()))
        imported = {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
        imported |= {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        named = {n.value.id for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        top = {name.partition(".")[0] for name in imported} | named
        modules = tuple(sorted(name for name in top if name in sys.stdlib_module_names and name != "builtins"))
        read = {node.id for node in nodes if isinstance(node, ast.Name)}
        return cls(source, modules, tuple(sorted(read)) if shared is None else tuple(shared))


@functools.cache
def _interpreter(python: str | None) -> tuple[str, tuple[str, ...]]:
    """The real interpreter binary and the prefix folders it needs bound into the sandbox. The
    sandbox cannot see a venv's pyvenv.cfg or run a pyenv shim (a shell script), so a venv link is
    resolved, and another interpreter is asked once for its executable and prefixes."""
    if python is None:
        real, prefixes = os.path.realpath(sys.executable), (sys.base_prefix, sys.base_exec_prefix)
    else:
        ask = "import sys; print(sys.executable); print(sys.base_prefix); print(sys.base_exec_prefix)"
        found = shutil.which(python) or python
        answer = subprocess.run([found, "-I", "-S", "-c", ask], capture_output=True, text=True, timeout=60)
        if answer.returncode != 0:
            raise OSError(f"{python} did not start: {answer.stderr.strip()[-300:]}")
        real, *rest = answer.stdout.split("\n")[:3]
        real, prefixes = os.path.realpath(real), tuple(rest)
    folders = {os.path.realpath(p) for p in prefixes if p} | {os.path.dirname(os.path.dirname(real))}
    keep = sorted(f for f in folders if f != "/" and f != "/usr" and not f.startswith("/usr/"))
    return real, tuple(f for f in keep if not any(f.startswith(o + "/") for o in keep))


def _run(code: str, mode: str, limits: _Limits, python: str | None, tests: _TestPart | None) -> SandboxResult:
    private = Path(tempfile.mkdtemp(prefix="daar-sandbox-"))  # 0700, never visible to the program
    start = time.perf_counter()
    try:
        token = secrets.token_hex(16)
        report = _launch_and_wait(private, code, tests, mode, limits, python, token)
        seconds = round(time.perf_counter() - start, 3)
        ended = _ending(_read_head(private / "result"), token)
        stdout, stderr = _read_head(private / "stdout"), _read_head(private / "stderr")
        return _verdict(report, ended, stdout, stderr, seconds, mode, limits)
    except OSError as error:
        return _error(f"cannot start the sandbox launcher: {error}", None, "", 0.0, mode, hint=False)
    finally:
        shutil.rmtree(private, ignore_errors=True)


# The launcher's modules in the order they are run; sandbox.py compiles them once per evaluator.
_MODULES = ("_sandbox_wire", "_sandbox_program", "_sandbox_judge", "_sandbox_launcher")
# Run by `python -c` in place of the launcher's file where the code comes compiled: argv[1] is the
# launcher's path (so it shows in the process list), argv[2] the file with the code.
_BOOT = (
    "import marshal, sys\n"
    "folder, codes = sys.argv[1].rpartition('/')[0], marshal.loads(open(sys.argv[2], 'rb').read())\n"
    "for name, code in codes[:-1]:\n"
    "    module = sys.modules[name] = type(sys)(name)\n"
    "    module.__file__ = f'{folder}/{name}.py'\n"
    "    exec(code, module.__dict__)\n"
    "__file__ = sys.argv[1]\n"
    "del sys.argv[1:3]\n"
    "exec(codes[-1][1])\n"
)


@functools.cache
def _compiled() -> bytes:
    """The launcher and the modules it imports, compiled once per evaluator: the launcher starts a
    fresh interpreter for every program, runs with -B, and would otherwise compile ~1,000 lines at
    each start (~8 ms of CPU). Only for an interpreter of this very version (marshal's format)."""
    codes = []
    for name in _MODULES:
        path = _LAUNCHER.with_name(f"{name}.py")
        codes.append((name, compile(path.read_bytes(), str(path), "exec")))
    return marshal.dumps(tuple(codes))


def _launch_and_wait(
    private: Path, code: str, tests: _TestPart | None, mode: str, limits: _Limits, python: str | None, token: str
) -> str:
    """Start the launcher with the token on a pipe and descriptors for the token it writes back and
    its report; return the report line once it ended (it enforces the time limit itself)."""
    interpreter, binds = _interpreter(python)
    (private / "program.py").write_text(code, encoding="utf-8")
    if tests is not None:  # read by the launcher only, never copied where the program runs
        (private / "tests.py").write_text(tests.source, encoding="utf-8")
    if mode == "process":
        (private / "work").mkdir(exist_ok=True)
        shutil.copy(private / "program.py", private / "work" / "program.py")
    token_r, token_w = os.pipe()
    os.write(token_w, token.encode())
    os.close(token_w)
    fds = {"token_fd": token_r}
    try:
        for name in ("result", "report"):
            fds[name + "_fd"] = os.open(private / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        args = _launch_args(private, mode, limits, binds, fds, tests)
        command = [interpreter, "-I", "-S", "-B", str(_LAUNCHER), *args]
        if interpreter == os.path.realpath(sys.executable):  # the same version: it can load our compiled code
            (private / "code").write_bytes(_compiled())
            command[4:5] = ["-c", _BOOT, str(_LAUNCHER), str(private / "code")]
        with open(private / "stdout", "wb") as out, open(private / "stderr", "wb") as err:
            proc = subprocess.Popen(
                command, cwd=private, env={"PATH": MINIMAL_PATH, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, pass_fds=tuple(fds.values()), start_new_session=True, close_fds=True,
            )
    finally:
        for fd in fds.values():
            os.close(fd)
    finished = _wait(proc, limits.timeout + 10)  # a backstop: the launcher stops at `timeout`
    _kill_group(proc)
    proc.wait()
    return _read_head(private / "report") if finished else "timeout"


def _launch_args(
    private: Path, mode: str, limits: _Limits, binds: tuple[str, ...], fds: dict[str, int], tests: _TestPart | None
) -> list[str]:
    """The launcher's key=value arguments (it parses them without importing json)."""
    values = {
        "mode": mode, "dir": private, "program": private / "program.py", "work": private / "work",
        "timeout": limits.timeout, "memory": limits.memory_mb << 20, "cpu": limits.cpu_seconds,
        "fsize": limits.file_mb << 20, "nproc": limits.max_processes, "work_mb": max(8, 4 * limits.file_mb), **fds,
    }
    if tests is not None:
        values.update(tests=private / "tests.py", modules=",".join(tests.modules), shared=",".join(tests.shared))
    return [f"{key}={value}" for key, value in values.items()] + [f"bind={folder}" for folder in binds]


def _ending(result: str, token: str) -> str:
    """How the writer of the token says the program ended: "done" (its last statement ran, or the
    tests passed), "MemoryError", "failed <why>" (the judge saw the tests fail), "" (nothing said)."""
    if result == token:
        return "done"
    if result == token + _MEMORY_MARK:
        return "MemoryError"
    if result.startswith(token + _FAILED_MARK):
        return "failed " + result[len(token + _FAILED_MARK) :].strip()
    return ""


def _error(
    message: str, returncode: int | None, stdout: str, seconds: float, mode: str, hint: bool = True
) -> SandboxResult:
    """An "error" result; also a warning, as callers that only read `.passed` would see a fail."""
    text = f"sandbox error: {message.strip()}\n" + (f"{_HINT}\n" if hint else "")
    warnings.warn(text, RuntimeWarning, stacklevel=2)
    return SandboxResult("error", returncode, stdout, text, seconds, mode, "sandbox error")


def _verdict(
    report: str, ended: str, stdout: str, stderr: str, seconds: float, mode: str, limits: _Limits
) -> SandboxResult:
    """Status and detail from the launcher's report line ("exit N cpu S", "signal N cpu S",
    "timeout", "error ...") and how the program process says it ended ("done" after its last
    statement or after the tests passed, "MemoryError", "failed <why>" from the launcher's judge, or ""
    when nothing was said): see docs/SANDBOX.md for why each is so."""
    kind, _, value = report.partition(" ")
    if kind == "error":  # the hint blames user namespaces only where they failed
        return _error(value, None, stdout, seconds, mode, hint=value.startswith("user namespaces:"))
    if kind == "timeout":
        detail = f"wall-clock limit of {limits.timeout:g} s"
        return SandboxResult("timeout", -signal.SIGKILL, stdout, stderr, seconds, mode, detail)
    how, _, cpu_text = value.partition(" cpu ")
    try:
        code, cpu = int(how), float(cpu_text)
    except ValueError:
        code, cpu = None, 0.0
    if kind not in ("exit", "signal") or code is None:
        return _error(f"the launcher ended without a report: {stderr.strip()[-500:]}", None, stdout, seconds, mode)
    returncode = code if kind == "exit" else -code
    status: Status = "failed"
    if kind == "exit" and code == 0 and ended == "done":
        status, detail = "passed", "passed"
    elif kind == "signal" and code in (signal.SIGXCPU, signal.SIGKILL) and cpu >= _CPU_SHARE * limits.cpu_seconds:
        status, detail = "timeout", f"CPU limit of {limits.cpu_seconds} s (used {cpu:.2f} s)"
    elif ended == "MemoryError":
        status, detail = "memory", f"MemoryError (limit {limits.memory_mb} MiB per process)"
    elif ended.startswith("failed "):
        detail = ended[len("failed ") :]
    elif kind == "signal":
        name = _signal_name(code)
        detail = f"crashed ({name})" if code in _CRASHES else f"killed by signal {name}"
    elif code == 0:
        detail = "exit 0 before its last statement ran"
        stderr += "\n[sandbox] exit status 0, but the program ended before its last statement ran\n"
    else:
        detail = f"exit {code}"
    return SandboxResult(status, returncode, stdout, stderr, seconds, mode, detail)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    """Wait for the launcher to end; False if it is still running after `seconds`. A pidfd wakes
    up at once, where `Popen.wait(timeout)` polls with sleeps of up to 50 ms."""
    try:
        handle = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([handle], [], [], seconds)[0])
    finally:
        os.close(handle)


def _read_head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(_OUTPUT_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
