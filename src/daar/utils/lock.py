"""One process at a time per output or cache folder.

Two processes writing one folder both compute, then overwrite each other's files (seen with two
experiment runs on one folder). The lock is an advisory `flock` on `<folder>/.daar.lock`, taken
without waiting: the second process stops at once with a message naming the holder, instead of
queueing behind a run that may take hours. The kernel drops the lock when its holder dies, so a
killed run never leaves a folder locked. Within one process the lock is re-entrant.

Cache entries are the exception to "never wait": a cache is shared by many runs at once (the
cells of a parallel experiment, two selections of one pool), and an entry that another process
is computing is worth waiting for, since it is exactly what this process would compute. Their
locks take `wait=True`: the waiter says whom it waits for, then blocks until the entry is done.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daar.errors import UserError

LOCK_FILE = ".daar.lock"
_held: set[str] = set()  # resolved folders this process holds


class BusyError(UserError):
    """Another process is using the folder."""


@contextmanager
def folder_lock(folder: Path, purpose: str, wait: bool = False) -> Iterator[None]:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot use {folder} as a folder: {err.strerror or err}") from None
    key = str(folder.resolve())
    if key in _held:  # this process already holds it (an experiment's cells share its cache)
        yield
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"cannot create the lock file {path}: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BusyError(
                    f"{folder} is in use by another daar process ({_describe(path)}); wait for it to finish, "
                    "or use another folder"
                ) from None
            print(f"waiting for another daar process ({_describe(path)}) to finish {folder}", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            raise UserError(f"cannot lock {path} ({err.strerror or err}); use a local folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "purpose": purpose, "since": time.strftime("%H:%M:%S")}).encode())
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']}, {info['purpose']}, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
