"""One process at a time per output folder; readers and one writer per cache entry.

Two processes writing one folder both compute, then overwrite each other's files (seen with two
experiment runs on one folder). The lock is an advisory `flock` on `<folder>/.daar.lock`, taken
without waiting: the second process stops at once with a message naming the holder, instead of
queueing behind a run that may take hours. The kernel drops the lock when its holder dies, so a
killed run never leaves a folder locked. Within one process the lock is re-entrant.

A folder the lock had to create is removed again when the command fails before writing anything
into it (a missing input, a bad setting): a failed command leaves nothing it did not have. A
folder that already existed is never touched by a failure.

Cache entries are the exception to "never wait": a cache is shared by many runs at once (the
cells of a parallel experiment, two selections of one pool), and an entry that another process
is computing is worth waiting for, since it is exactly what this process would compute. Their
locks (`file_lock`) wait: a reader takes the lock shared while it checks and loads an entry, the
one process computing it takes it exclusively, and `daar cache` removes only entries whose lock it
gets at once (daar.utils.cache_size). Entry lock files are removed with their entry, so a lock is
held only once the file locked is still the one at its path.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daar.errors import UserError

LOCK_FILE = ".daar.lock"
_held: set[str] = set()  # lock files this process holds


class BusyError(UserError):
    """Another process is using the folder."""


@contextmanager
def folder_lock(folder: Path, purpose: str, wait: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock (created, with its parents, when missing) for the block."""
    folder = Path(folder)
    made = _make_folders(folder)
    with file_lock(folder / LOCK_FILE, purpose, wait=wait, what=str(folder)) as fresh:
        try:
            yield
        except BaseException:
            if fresh:
                _remove_unused(made, folder / LOCK_FILE)
            raise


@contextmanager
def file_lock(
    path: Path, purpose: str, *, shared: bool = False, wait: bool = False, what: str | None = None
) -> Iterator[bool]:
    """Hold the flock of the file `path` (created when missing) for the block; yields False when
    this process held it already (re-entrant). `shared`: a reader's lock, which many processes
    hold at once and which an exclusive holder excludes. A read-only cache is read unlocked."""
    path = Path(path)
    key = _key(path)
    if key in _held:
        yield False
        return
    what = what or str(path)
    while True:
        fd = _open_lock(path, purpose, shared)
        if fd is None:  # a read-only cache: nobody can write or remove an entry there either
            yield False
            return
        if _flock(fd, path, shared, wait, what) and _still_at(fd, path):
            break
        os.close(fd)  # removed with its entry while this process waited: lock the new file
    try:
        if not shared:
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "purpose": purpose, "since": time.strftime("%H:%M:%S")}
            os.write(fd, json.dumps(info).encode())
        _held.add(key)
        try:
            yield True
        finally:
            _held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def try_lock(path: Path, create: bool) -> int | None:
    """An exclusive lock on the file `path` (created if missing and `create`) taken at once, as an
    open descriptor (close it to release); None when a process holds it, this one included, or
    when there is no such file."""
    if _key(Path(path)) in _held:
        return None
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    if not _still_at(fd, Path(path)):
        os.close(fd)
        return None
    return fd


def _key(path: Path) -> str:
    """One name per lock file, however it is reached (symbolic links, relative paths)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _open_lock(path: Path, purpose: str, shared: bool) -> int | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if shared and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return None
        raise UserError(f"cannot create the lock file {path} for {purpose}: {err.strerror or err}") from None


def _flock(fd: int, path: Path, shared: bool, wait: bool, what: str) -> bool:
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if not wait:
            os.close(fd)
            raise BusyError(
                f"{what} is in use by another daar process ({_describe(path)}); wait for it to finish, "
                "or use another folder"
            ) from None
        print(f"waiting for another daar process ({_describe(path)}) to finish {what}", flush=True)
        fcntl.flock(fd, mode)
        return True
    except OSError as err:
        os.close(fd)
        raise UserError(f"cannot lock {path} ({err.strerror or err}); use a local folder") from None


def _still_at(fd: int, path: Path) -> bool:
    """Whether the locked file is still the one at `path` (a remover unlinks it while holding it)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those this call created, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    made = []
    for path in reversed(missing):
        try:
            path.mkdir()
            made.append(path)
        except FileExistsError:
            continue  # another process made it: not ours to remove
        except OSError as err:
            raise UserError(f"cannot use {folder} as a folder: {err.strerror or err}") from None
    if not folder.is_dir():
        raise UserError(f"cannot use {folder} as a folder: it is not a folder")
    return made[::-1]


def _remove_unused(made: list[Path], lock: Path) -> None:
    """Remove the folders this process created when nothing but the lock (and empty folders) is in
    them: a command that failed before its first output leaves nothing behind."""
    if not made or any(p.is_file() or p.is_symlink() for p in made[0].rglob("*") if p != lock):
        return
    lock.unlink(missing_ok=True)
    for path in sorted(made[0].rglob("*"), reverse=True):
        path.rmdir()
    for path in made:
        try:
            path.rmdir()
        except OSError:
            return  # another process put something there meanwhile


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']}, {info['purpose']}, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
