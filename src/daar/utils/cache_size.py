"""The shared cache's entries, their sizes and last uses, a clean-up to a size, and a check.

An entry is one cached result: a feature folder (features/<key>/), a fitted stage (the files of
stages/<name>-<key>, a head's weights and metrics counting as one), the token ids or token counts
of a pool, a chunk of model scores; with its digest list and its lock (daar.utils.entry). Every
entry is keyed by what it was computed from, so removing one only costs its recomputation. Its
last use is the newest time stamp among its files (a cache hit touches its digest list).

An entry is removed only while this process holds its lock exclusively, taken at once: an entry
that a run is computing or reading right now is never removed, and `daar cache` never waits.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from daar.errors import UserError
from daar.utils.entry import CacheEntry, Damaged
from daar.utils.lock import LOCK_FILE, try_lock

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


@dataclass
class Entry:
    kind: str
    paths: list[Path]
    bytes: int
    last_use: float

    @property
    def name(self) -> str:
        return self.paths[0].name.split(".")[0]

    @property
    def cache_entry(self) -> CacheEntry:
        return CacheEntry(self.paths[0].parent, self.name)


def parse_size(text: str) -> int:
    """'20GB', '500M', '1.5t', '1024' -> bytes (powers of 1,024)."""
    found = _SIZE.match(text)
    if not found:
        raise UserError(f"--max-size: {text!r} is not a size (e.g. 20GB, 500MB, 1024)")
    number, unit = float(found.group(1)), found.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def entries(root: Path) -> list[Entry]:
    """Every entry under `root`, oldest last use first. Runs may add and remove files meanwhile:
    a file gone before it was measured is not counted."""
    found: list[Entry] = []
    if not Path(root).is_dir():
        return found
    for kind in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        groups: dict[str, list[Path]] = {}
        for path in sorted(kind.iterdir()):
            if path.name.startswith("."):
                continue
            groups.setdefault(path.name.split(".")[0], []).append(path)
        for paths in groups.values():
            sizes, stamps = [], []
            for path in paths:
                for file in [path] if not path.is_dir() else [path, *path.rglob("*")]:
                    try:
                        info = file.lstat()
                    except FileNotFoundError:
                        continue
                    stamps.append(info.st_mtime)
                    sizes.append(info.st_size if file.is_file() else 0)
            if stamps:
                found.append(Entry(kind.name, paths, sum(sizes), max(stamps)))
    return sorted(found, key=lambda e: e.last_use)


def clean(root: Path, max_bytes: int, dry_run: bool = False) -> tuple[list[Entry], list[Entry]]:
    """Remove the least recently used entries until the rest hold at most `max_bytes`; returns
    (removed, kept). Entries in use (their lock held by a run) are kept."""
    found = entries(root)
    total = sum(e.bytes for e in found)
    removed: list[Entry] = []
    for entry in found:
        if total <= max_bytes:
            break
        fd = _take(entry, create=not dry_run)
        if fd is False:
            continue
        try:
            if not dry_run:
                entry.cache_entry.remove()
        finally:
            if isinstance(fd, int):
                os.close(fd)
        removed.append(entry)
        total -= entry.bytes
    return removed, [e for e in found if e not in removed]


def verify(root: Path, dry_run: bool = False) -> tuple[list[tuple[Entry, str]], list[Entry], list[Entry]]:
    """Check every finished entry's files against its digests and remove the damaged ones (`dry_run`:
    only name them); returns (damaged with the reason, unfinished entries (no digest list: a run
    computes them again), entries in use (not checked))."""
    damaged: list[tuple[Entry, str]] = []
    unfinished: list[Entry] = []
    busy: list[Entry] = []
    for entry in entries(root):
        fd = _take(entry, create=not dry_run)
        if fd is False:
            busy.append(entry)
            continue
        try:
            own = entry.cache_entry
            if not own.digests.exists():
                unfinished.append(entry)
                continue
            try:
                own.check()
            except Damaged as err:
                if not dry_run:
                    own.remove()
                damaged.append((entry, str(err)))
        finally:
            if isinstance(fd, int):
                os.close(fd)
    return damaged, unfinished, busy


def _take(entry: Entry, create: bool) -> int | None | bool:
    """The entry's lock taken exclusively at once (an open descriptor; None when there is no lock
    file and `create` is off: nobody holds it), or False when a run holds it."""
    for path in entry.paths:  # folders of older versions lock themselves inside
        if (path / LOCK_FILE).is_file():
            fd = try_lock(path / LOCK_FILE, create=False)
            if fd is None:
                return False
            os.close(fd)
    lock = entry.cache_entry.lock
    if not create and not lock.exists():
        return None
    fd = try_lock(lock, create=True)
    return False if fd is None else fd
