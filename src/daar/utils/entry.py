"""Cache entries that prove themselves: every result read back from disk is checked against the
digests written with it, so a damaged file is computed again instead of changing a result.

An entry is the files `<kind>/<name>.<ext>` and the folder `<kind>/<name>/` of a folder such as
the shared cache's `features/` or `stages/` (daar.utils.cache_size groups them by name). Beside
them lie

- `<name>.digests.json`, written last by the process that computed the entry: the size and digest
  of each file a reader needs. An entry without it was never finished (a killed run, an older
  daar) and is computed again; a features folder then resumes at its first unfinished row.
- `<name>.lock`: readers hold it shared while they check and load the entry, the one process
  computing it holds it exclusively, and `daar cache` removes only entries whose lock it gets at
  once (daar.utils.lock).

A read opens each file once, checks its size and digest on the mapped bytes, and hands those same
bytes to the loader, so a file replaced or removed meanwhile cannot slip in unchecked. A listed
file that is missing, short or changed, or a digest list that cannot be read, makes the entry a
miss: one warning names it, its files are removed, and it is computed as into an empty cache.

The hash is xxh3-128 (xxhash): about 9 GB/s of CPU time on one core of this project's machine,
against 1.0 GB/s for sha256 and 0.8 for blake2b (measured on 64 MiB in memory); checking the 16k
pool's features (2 x 37 MB) costs about 7 ms of CPU. It guards against damage (a disk error, a
truncated copy, a sync tool, a hand), not against someone who can write the cache, who could
rewrite the digests too.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import xxhash

from daar.errors import UserError
from daar.utils.cache import atomic_path, file_sha256, touch, write_json
from daar.utils.inside import inside
from daar.utils.lock import file_lock

HASH = "xxh3_128"
DIGESTS = ".digests.json"
LOCK = ".lock"
T = TypeVar("T")
Contents = dict[str, Any]  # file name -> its checked bytes (bytes, or a read-only map of a large file)


class Damaged(Exception):
    """A finished entry whose files no longer match their digests; the message says how."""


def digest(data: Any) -> str:
    return xxhash.xxh3_128_hexdigest(data)


@dataclass(frozen=True)
class CacheEntry:
    """One entry: `kind` is the folder holding it (e.g. <cache>/stages), `name` its name there."""

    kind: Path
    name: str

    @classmethod
    def at(cls, path: Path) -> CacheEntry:
        """The entry that the file or folder `path` belongs to."""
        path = Path(path)
        return cls(path.parent, path.name.split(".")[0])

    @property
    def digests(self) -> Path:
        return self.kind / f"{self.name}{DIGESTS}"

    @property
    def lock(self) -> Path:
        return self.kind / f"{self.name}{LOCK}"

    def __str__(self) -> str:
        return str(self.kind / self.name)

    def paths(self) -> list[Path]:
        """Every file and folder of the entry but its lock, the digest list first."""
        found = sorted(p for p in self.kind.glob(f"{self.name}.*") if p != self.lock and p != self.digests)
        folder = self.kind / self.name
        return [self.digests, *found, *([folder] if folder.exists() or folder.is_symlink() else [])]

    # ---------------------------------------------------------------------------- read and write
    def read(self, names: Iterable[str]) -> Contents | None:
        """The checked contents of `names` (paths relative to `kind`), or None when the entry was
        never finished; raises Damaged when it was and has changed since."""
        listed = self._listed()
        if listed is None:
            return None
        found: Contents = {}
        for name in names:
            if name not in listed:
                raise Damaged(f"its digest list lacks {name}")
            found[name] = self._checked(name, listed[name])
        return found

    def seal(self, names: Iterable[str], staged: dict[str, Path] | None = None) -> None:
        """Write the digest list of `names`: from now on the entry counts as finished. `staged`: where
        some of them are still, under a temporary name, for a writer whose last step is their rename."""
        files = {}
        for name in names:
            data = mapped((staged or {}).get(name) or self.kind / _belongs(self.name, name))
            files[name] = {"bytes": len(data), "digest": digest(data)}
        write_json(self.digests, {"hash": HASH, "files": files})

    def check(self) -> None:
        """Check every file the digest list names (`daar cache --verify`); raises Damaged. An
        entry without one passes (a run computes it again)."""
        listed = self._listed()
        for name, expected in (listed or {}).items():
            self._checked(name, expected)

    def clear(self) -> None:
        """Remove every file of the entry but its lock (the caller holds it)."""
        for path in self.paths():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the whole entry, lock included; the caller holds the lock (daar.utils.lock)."""
        self.clear()
        self.lock.unlink(missing_ok=True)

    def _listed(self) -> dict[str, dict[str, Any]] | None:
        try:
            data = json.loads(self.digests.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise Damaged(f"its digest list cannot be read ({err})") from None
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or data.get("hash") != HASH:
            raise Damaged("its digest list is not one daar wrote")
        for name, expected in files.items():
            _belongs(self.name, name)
            if not isinstance(expected, dict) or not {"bytes", "digest"} <= set(expected):
                raise Damaged(f"its digest list has no size and digest for {name}")
        return files

    def _checked(self, name: str, expected: dict[str, Any]) -> Any:
        try:
            data = mapped(self.kind / _belongs(self.name, name))
        except FileNotFoundError:
            raise Damaged(f"{name} is missing") from None
        except (OSError, ValueError) as err:  # a folder in its place, no permission, a disk error
            raise Damaged(f"{name} cannot be read ({err})") from None
        if len(data) != expected["bytes"]:
            raise Damaged(f"{name} holds {len(data)} bytes, {expected['bytes']} were written")
        if digest(data) != expected["digest"]:
            raise Damaged(f"{name} does not match its digest")
        return data


MAP_BYTES = 1 << 20  # files from this size on are mapped, not copied


def mapped(path: Path) -> Any:
    """A file's bytes: a large file as a read-only map, valid for as long as it is referenced (numpy
    arrays made with frombuffer keep it) even after the file is removed; a small one read whole."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size >= MAP_BYTES:
            return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def _belongs(entry: str, name: str) -> str:
    """`name` when it is one of entry's own paths: `<entry>.<ext>` or `<entry>/<file>`, nothing that
    could lead out of the kind folder."""
    parts = PurePosixPath(name).parts
    first = parts[0] if parts else ""
    own = first == entry if len(parts) == 2 else first.startswith(f"{entry}.") and len(parts) == 1
    if not own or "\\" in name or any(p in ("", ".", "..") for p in parts) or name != "/".join(parts):
        raise Damaged(f"its digest list names {name!r}, which is not a file of the entry")
    return name


_warned: set[str] = set()


def warn_damaged(what: str, entry: CacheEntry, reason: str) -> None:
    """One warning per damaged entry and process."""
    from daar.utils.progress import console

    if str(entry) in _warned:
        return
    _warned.add(str(entry))
    console.print(
        f"[bold yellow]warning:[/] cache entry {entry} ({what}) is damaged: {reason}; computing it again",
        highlight=False,
        soft_wrap=True,
    )


def cached(
    entry: CacheEntry,
    names: list[str],
    load: Callable[[Contents], T],
    make: Callable[[], T],
    what: str,
    resume: bool = False,
) -> tuple[T, bool]:
    """(the entry's value, whether it was cached): `load` of its checked files, else `make()`, which
    writes the files `names` (relative to entry.kind) and returns the value; the entry is then
    sealed. Readers wait for a process that is computing the entry and then read its result.
    `resume`: files of an unfinished entry stay for `make` to resume from (features)."""
    with file_lock(entry.lock, f"reading {what}", shared=True, wait=True, what=str(entry)):
        found = _load(entry, names, load, what, warn=False)
        if isinstance(found, tuple):
            return found[0], True
    with file_lock(entry.lock, f"computing {what}", wait=True, what=str(entry)):
        found = _load(entry, names, load, what, warn=True)
        if isinstance(found, tuple):
            return found[0], True
        if not resume or found is False:  # a damaged entry starts afresh, never from its files
            entry.clear()
        value = make()
        if not entry.digests.exists():  # a writer may seal its entry itself (a features folder)
            entry.seal(names)
        return value, False


def cached_arrays(
    path: Path, compute: Callable[[], dict[str, np.ndarray]], what: str
) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays of the safetensors entry `path` (and whether they were cached), computed and saved
    when it is missing or damaged; either way they are what loading the saved file gives, in the
    order `compute` gave them (kept in the file's metadata: safetensors loads in no set order)."""
    from safetensors.numpy import save

    def make() -> dict[str, np.ndarray]:
        arrays = compute()
        data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, {"order": json.dumps(list(arrays))})
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return _arrays(data)

    return cached(CacheEntry.at(path), [path.name], lambda found: _arrays(found[path.name]), make, what)


def _arrays(data: Any) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    arrays = load(bytes(data))
    header = json.loads(bytes(data[8 : 8 + int.from_bytes(bytes(data[:8]), "little")]))
    return {name: arrays[name] for name in json.loads(header["__metadata__"]["order"])}


def _load(entry: CacheEntry, names: list[str], load: Callable[[Contents], T], what: str, warn: bool) -> Any:
    """(value,) when the entry is finished and sound; None when unfinished; False when damaged."""
    try:
        contents = entry.read(names)
        if contents is None:
            return None
        try:
            value = load(contents)
        except Exception as err:  # checked bytes a loader cannot read: the digests were of bad files
            raise Damaged(f"it cannot be read ({type(err).__name__}: {err})") from None
    except Damaged as err:
        if warn:
            warn_damaged(what, entry, str(err))
        return False
    touch(entry.digests)  # its last use, for `daar cache --max-size`
    return (value,)


def check_listed(folder: Path, files: object, where: str) -> None:
    """The files a folder's own list names with their sha256 (a fitted folder's daar.json `files`):
    each a plain name inside the folder (daar.utils.inside) whose content has that digest; a
    UserError names the first that is not."""
    if not isinstance(files, dict):
        raise UserError(f"{where}: `files` is not a mapping of file names to sha256 digests")
    for name, expected in files.items():
        path = inside(folder, name, f"{where}: files")
        if not path.is_file() or file_sha256(path) != expected:
            raise UserError(f"{folder}: {name} does not belong to this fitted state (missing or changed)")
