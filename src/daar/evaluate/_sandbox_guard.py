"""The Python-level guard of DAAR_SANDBOX=process mode, which runs where namespaces are unavailable.

Why it exists at all: it catches the accidents of weak models (a stray `os.remove`, a `shutil.rmtree`
of the wrong folder, a `subprocess` call). Why it is not a security boundary: it only replaces
Python names, so `io.FileIO`, `_io`, `posix`, `ctypes` or a descriptor the program already holds
reach the kernel directly. The launcher loads this file by path (it runs without site-packages);
it imports no heavy module (`subprocess` alone costs ~10 ms per run), hence the plain annotations.
"""

from __future__ import annotations

import _posixsubprocess
import builtins
import io
import os

PATH_FUNCTIONS = (
    ("remove", 1), ("unlink", 1), ("rmdir", 1), ("mkdir", 1), ("makedirs", 1), ("removedirs", 1),
    ("rename", 2), ("replace", 2), ("renames", 2), ("link", 2), ("symlink", 2), ("chmod", 1),
    ("chown", 1), ("truncate", 1), ("utime", 1), ("mkfifo", 1), ("mknod", 1), ("lchown", 1),
)
REFUSED = (
    "system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
    "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "kill", "killpg",
    "chdir", "chroot",
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install(root: str) -> None:
    """Refuse writes outside `root` through the usual Python names, and new processes."""
    real_open, real_os_open, realpath = io.open, os.open, os.path.realpath

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor
        full = realpath(os.fsdecode(path))
        return full == root or full.startswith(root + os.sep) or full == "/dev/null"

    def deny(path: object) -> None:
        raise PermissionError(f"sandbox: writing outside the sandbox directory is not allowed: {path!r}")

    def guarded_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if any(flag in mode for flag in "wax+") and not inside(file):
            deny(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & WRITE_FLAGS and not inside(path):
            deny(path)
        return real_os_open(path, flags, *args, **kwargs)

    def paths(function: object, count: int) -> object:
        def guarded(*args: object, **kwargs: object) -> object:
            for path in args[:count]:
                if not inside(path):
                    deny(path)
            return function(*args, **kwargs)

        return guarded

    def refuse(name: str) -> object:
        def refused(*args: object, **kwargs: object) -> object:
            raise PermissionError(f"sandbox: {name} is not allowed")

        return refused

    builtins.open = io.open = guarded_open
    os.open = guarded_os_open
    for name, count in PATH_FUNCTIONS:
        if hasattr(os, name):
            setattr(os, name, paths(getattr(os, name), count))
    for name in REFUSED:
        if hasattr(os, name):
            setattr(os, name, refuse("os." + name))
    _posixsubprocess.fork_exec = refuse("subprocess")  # what subprocess.Popen calls to start a child
