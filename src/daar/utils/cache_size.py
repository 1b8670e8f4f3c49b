"""The shared cache's entries, their sizes and last uses, and a clean-up to a size.

An entry is one cached result: a feature folder (features/<key>/), a fitted stage (the files of
stages/<name>-<key>, a head's weights and metrics counting as one), the token ids or token counts
of a pool, a chunk of model scores. Every entry is keyed by what it was computed from, so removing
one only costs its recomputation. Its last use is the newest time stamp among its files (a cache
hit touches the entry, daar.utils.cache.touch). An entry that a run is computing right now (its
lock is held) is never removed.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from daar.errors import UserError
from daar.utils.lock import LOCK_FILE

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


def parse_size(text: str) -> int:
    """'20GB', '500M', '1.5t', '1024' -> bytes (powers of 1,024)."""
    found = _SIZE.match(text)
    if not found:
        raise UserError(f"--max-size: {text!r} is not a size (e.g. 20GB, 500MB, 1024)")
    number, unit = float(found.group(1)), found.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def entries(root: Path) -> list[Entry]:
    """Every entry under `root`, oldest last use first."""
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
            files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
            stamps = [f.stat().st_mtime for f in files] + [p.stat().st_mtime for p in paths]
            found.append(Entry(kind.name, paths, sum(f.stat().st_size for f in files), max(stamps)))
    return sorted(found, key=lambda e: e.last_use)


def clean(root: Path, max_bytes: int, dry_run: bool = False) -> tuple[list[Entry], list[Entry]]:
    """Remove the least recently used entries until the rest hold at most `max_bytes`; returns
    (removed, kept). Entries being computed (their lock held by a run) are kept."""
    found = entries(root)
    total = sum(e.bytes for e in found)
    removed: list[Entry] = []
    for entry in found:
        if total <= max_bytes:
            break
        if _busy(entry):
            continue
        if not dry_run:
            for path in entry.paths:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(entry)
        total -= entry.bytes
    return removed, [e for e in found if e not in removed]


def _busy(entry: Entry) -> bool:
    """Whether a run holds the entry's lock now (a feature folder being computed)."""
    for path in entry.paths:
        lock = path / LOCK_FILE
        if not lock.is_file():
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return False
