"""Running model-written code in a separate, limited Python process.

Why a subprocess and not `exec`: generated code can loop forever, allocate until the machine
swaps, delete files or read secrets from the environment. Here each program runs in a fresh
`python -I` (isolated mode: no user site-packages, PYTHON* variables ignored, script dir not on
sys.path) with:

- a wall-clock limit (the whole process group is killed with SIGKILL when it expires),
- RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space = memory), RLIMIT_FSIZE (largest file it may
  write, which also caps its captured output) and RLIMIT_CORE = 0, set in `preexec_fn`,
- its own temporary working directory, deleted afterwards, with HOME and TMPDIR pointing inside,
- an environment with nothing inherited: only a minimal PATH, HOME, TMPDIR and LANG (so no tokens,
  keys or proxies reach it),
- stdout/stderr written to files in its directory (a program that prints forever cannot fill the
  evaluator's memory), of which the first 64 KiB are read back,
- a prelude that, before the program runs, replaces `open`/`io.open`, `os.open` and the os
  functions that create, remove or rename paths with versions that refuse any path outside the
  directory, and disables process creation (`os.system`, `os.fork`, `os.exec*`, `subprocess`).

Honest limits: the prelude is a best-effort guard, not a security boundary. Code that uses
`ctypes`, reaches the original functions through `_io`/`posix` or `gc`, or writes through file
descriptors it was given can still write elsewhere; the process also keeps network access and
can read files the user can read. For untrusted models, run the evaluation inside a container or
VM (no network, read-only root, a non-privileged user). This matches the threat model of
HumanEval's own harness: catch accidents of weak models, not adversaries.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "memory", "error"]

MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
_OUTPUT_BYTES = 64 * 1024

# The guard runs inside the child before the program. `ROOT` is the sandbox directory.
_PRELUDE = r"""
import builtins, io, os, sys
ROOT = os.path.realpath(os.getcwd())
_SOURCE = io.open("program.py", encoding="utf-8").read()
_ALLOWED = (ROOT, "/dev/null")
_real_open, _real_os_open, _realpath = io.open, os.open, os.path.realpath

def _inside(path):
    if isinstance(path, int):
        return True  # an already-open descriptor
    full = _realpath(os.fsdecode(path))
    return full == ROOT or full.startswith(ROOT + os.sep) or full in _ALLOWED

def _deny(path):
    raise PermissionError(f"sandbox: writing outside the sandbox directory is not allowed: {path!r}")

def _open(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+") and not _inside(file):
        _deny(file)
    return _real_open(file, mode, *args, **kwargs)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _os_open(path, flags, *args, **kwargs):
    if flags & _WRITE_FLAGS and not _inside(path):
        _deny(path)
    return _real_os_open(path, flags, *args, **kwargs)

def _guard_paths(function, count):
    def guarded(*args, **kwargs):
        for path in args[:count]:
            if not _inside(path):
                _deny(path)
        return function(*args, **kwargs)
    return guarded

def _refuse(name):
    def refused(*args, **kwargs):
        raise PermissionError(f"sandbox: {name} is not allowed")
    return refused

builtins.open = io.open = _open
os.open = _os_open
for _name, _count in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("mkdir", 1), ("makedirs", 1),
                      ("removedirs", 1), ("rename", 2), ("replace", 2), ("renames", 2), ("link", 2),
                      ("symlink", 2), ("chmod", 1), ("chown", 1), ("truncate", 1), ("utime", 1),
                      ("mkfifo", 1), ("mknod", 1), ("lchown", 1)):
    if hasattr(os, _name):
        setattr(os, _name, _guard_paths(getattr(os, _name), _count))
for _name in ("system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "execvpe", "execl",
              "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
              "posix_spawnp", "kill", "killpg", "chdir", "chroot"):
    if hasattr(os, _name):
        setattr(os, _name, _refuse("os." + _name))
import subprocess as _subprocess
_subprocess.Popen = _refuse("subprocess")
del _name, _count
sys.argv = ["program.py"]
_code = compile(_SOURCE, "program.py", "exec")
del _SOURCE
exec(_code, {"__name__": "__main__", "__builtins__": builtins})
"""


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program: `passed` only for a clean exit within all limits."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _limits(memory_mb: int, cpu_seconds: int, file_mb: int):
    """The preexec_fn: resource limits applied in the child between fork and exec."""

    def apply() -> None:
        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        size = file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _read_head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(_OUTPUT_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def run_python(
    code: str,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    cpu_seconds: int | None = None,
    file_mb: int = 16,
    python: str | None = None,
) -> SandboxResult:
    """Run `code` as a program in a fresh limited interpreter and report how it ended.

    Status: "passed" (exit 0), "failed" (non-zero exit, e.g. a failing assert), "timeout" (wall or
    CPU limit), "memory" (MemoryError or killed at the address-space limit), "error" (the sandbox
    itself could not start the program). `cpu_seconds` defaults to the wall limit rounded up.
    """
    cpu = cpu_seconds if cpu_seconds is not None else max(1, int(timeout + 0.999))
    workdir = Path(tempfile.mkdtemp(prefix="daar-sandbox-"))
    start = time.perf_counter()
    try:
        (workdir / "program.py").write_text(code, encoding="utf-8")
        (workdir / "run.py").write_text(_PRELUDE, encoding="utf-8")
        env = {"PATH": MINIMAL_PATH, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        out_path, err_path = workdir / ".stdout", workdir / ".stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            try:
                proc = subprocess.Popen(
                    [python or sys.executable, "-I", "-B", "run.py"],
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    preexec_fn=_limits(memory_mb, cpu, file_mb),
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as error:
                return SandboxResult("error", None, "", f"cannot start python: {error}", 0.0)
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                proc.wait()
            _kill_group(proc)  # children it may have left behind
        seconds = time.perf_counter() - start
        stdout, stderr = _read_head(out_path), _read_head(err_path)
        code_ = proc.returncode
        if timed_out or (code_ in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr):
            status: Status = "timeout"
        elif "MemoryError" in stderr or code_ == -signal.SIGSEGV:
            status = "memory"
        elif code_ == 0:
            status = "passed"
        else:
            status = "failed"
        return SandboxResult(status, code_, stdout, stderr, round(seconds, 3))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
