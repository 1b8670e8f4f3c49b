"""Atomic writes and content keys: the two things every cached, resumable stage relies on.

A stage's output is written under a temporary name and renamed, so a killed run leaves either the
old file or the new one, never half of one; its key hashes everything the output depends on, so a
rerun reuses it exactly when nothing relevant changed.

JSON lines (`write_jsonl`, `json_line`) hold rows as they were read. Values that JSON has no type
for are written in a lossless text form instead of stopping the run:

- datetime, date, time (Parquet timestamp, date32/64, time32/64): ISO 8601 text from
  `isoformat()`, e.g. "2009-02-13T23:31:30.123456789" (nanoseconds kept) or
  "2009-02-14T00:31:30.123456+01:00" (an aware timestamp keeps its UTC offset);
- timedelta (Parquet duration): an ISO 8601 duration, "P{days}DT{h}H{m}M{s}[.fraction]S", with a
  leading "-" when negative, e.g. "P0DT1H2M3.000000001S";
- Decimal: its exact decimal text, str(value), e.g. "1.2300" (scale kept);
- bytes: the text itself when the bytes are valid UTF-8, else the object {"$base64": "<base64>"};
- NaN and infinite floats: the strings "NaN", "Infinity" and "-Infinity";
- numpy scalars and arrays: their Python values (datetime64 as ISO text, timedelta64 as above);
  UUID: its canonical text; tuples (Parquet map entries, intervals): lists;
- a string holding an unpaired surrogate (from a JSON escape such as \\ud800): the whole line is
  written with ASCII escapes, which read back to the same string.

Anything else raises UnwritableValue naming the field, so a reader can reject the row up front.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def cache_root() -> Path:
    """The user's daar folder: converted models, file digests and the shared cache live in it
    ($DAAR_CACHE, else ~/.cache/daar)."""
    return Path(os.environ.get("DAAR_CACHE", Path.home() / ".cache" / "daar"))


def shared_cache() -> Path:
    """Where every command caches features, fitted stages and token ids unless told otherwise
    (`--cache-dir`, or $DAAR_CACHE_DIR): entries are keyed by content (rows, model, adapter,
    settings, code), so any run that needs one reuses it, whatever its output folder. Entries lock
    themselves while they are computed (daar.utils.lock), so runs may share it at the same time;
    `daar cache clean` bounds its size."""
    return Path(os.environ.get("DAAR_CACHE_DIR") or cache_root() / "cache")


def touch(path: Path) -> None:
    """Mark a cache entry as used now (`daar cache clean` removes the least recently used first);
    a read-only cache only loses that ordering."""
    try:
        os.utime(path)
    except OSError:
        pass


def stable_key(*parts: Any, length: int = 16) -> str:
    """A hex digest of JSON-serialisable parts (dict keys sorted), short enough for file names."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def code_version(*modules: str) -> str:
    """A digest of the source of the modules that compute a cached result, so an entry made by
    other code (a new prompt, another pooling) is never reused. Docstring edits count too: a
    recomputation costs minutes, a stale result costs trust."""
    import importlib

    digest = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(name)
        digest.update(Path(module.__file__ or name).read_bytes())
    return digest.hexdigest()[:12]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a block at a time (a pool's or a fitted file's name of its content)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def texts_key(texts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds. The
    result gets the permissions of a plainly created file (mkstemp's are owner-only)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(target: Path):
    """Yield a temporary folder beside `target`; it replaces `target` only if the block succeeds.

    Two renames (old out of the way, new in): a crash between them leaves no `target` at all,
    which readers treat as "not there", never a mix of old and new files; a failed second rename
    puts the old folder back. Leftover `.tmp`/`.old` folders are swept by the next run
    (daar.write.clear_outputs)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if not target.exists():
            os.replace(tmp, target)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / "x")
        try:
            os.replace(tmp, target)
        except OSError:
            os.replace(old / "x", target)  # should this fail too, the old folder stays in `old`
            shutil.rmtree(old, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(target: Path, rows: Iterable[dict[str, Any]]) -> int:
    """One JSON object a line, UTF-8; values JSON cannot hold take the forms in the module docstring."""
    count = 0
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        for row in rows:
            handle.write(json_line(row) + b"\n")
            count += 1
    return count


class UnwritableValue(TypeError):
    """A value with no JSON form; `field` says where it sits in the row ("meta.tags[2]")."""

    def __init__(self, field: str, value: Any):
        self.field = field
        self.value_type = type(value).__name__
        where = f"field '{field}'" if field else "the row"
        super().__init__(f"{where} holds a {self.value_type} value, which has no JSON form")


def json_line(row: Any) -> bytes:
    """`row` as one line of JSON (UTF-8 bytes, no newline); raises UnwritableValue."""
    try:
        return _json_bytes(row)
    except RecursionError:
        # Deeply nested rows that were read (so encoded) once: give the encoder the headroom that
        # a deeper call stack here may have taken away.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + 2000)
        try:
            return _json_bytes(row)
        finally:
            sys.setrecursionlimit(limit)


def _json_bytes(row: Any) -> bytes:
    try:
        text = json.dumps(row, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):  # a type JSON lacks, or NaN/inf: the slow path converts
        row = to_jsonable(row)
        text = json.dumps(row, ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate: \ud800 escapes keep it exactly
        return json.dumps(row, ensure_ascii=True, allow_nan=False).encode("ascii")


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def to_jsonable(value: Any, field: str = "") -> Any:
    """`value` with every part JSON cannot hold turned into its text form (module docstring)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE.get(value, "NaN")
    if isinstance(value, dict):
        return {_json_key(k, field): to_jsonable(v, _child(field, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dt.date | dt.time):  # datetime is a date; pandas' Timestamp keeps nanoseconds
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _iso_duration(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(data).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "M":
            return to_jsonable(np.datetime_as_string(value).tolist(), field)
        return to_jsonable(list(value) if value.dtype.kind == "m" else value.tolist(), field)
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value))
    if isinstance(value, np.timedelta64):
        return "NaT" if np.isnat(value) else _iso_duration(value)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), field)
    raise UnwritableValue(field, value)


def _child(field: str, key: Any) -> str:
    return f"{field}.{key}" if field else str(key)


def _json_key(key: Any, field: str) -> Any:
    if isinstance(key, str | bool | int) or key is None:
        return key
    text = to_jsonable(key, _child(field, key))
    if not isinstance(text, str):
        raise UnwritableValue(_child(field, key), key)
    return text


def _iso_duration(value: dt.timedelta | np.timedelta64) -> str:
    """An exact ISO 8601 duration: 'P{d}DT{h}H{m}M{s}[.fraction]S', '-' in front when negative."""
    if isinstance(value, np.timedelta64):
        nanos = int(value.astype("timedelta64[ns]").astype(np.int64))
    elif hasattr(value, "value") and isinstance(value.value, int):  # pandas Timedelta: nanoseconds
        nanos = value.value
    else:
        nanos = ((value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds) * 1000
    sign, nanos = ("-" if nanos < 0 else ""), abs(nanos)
    seconds, fraction = divmod(nanos, 1_000_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    frac = f".{fraction:09d}".rstrip("0") if fraction else ""
    return f"{sign}P{days}DT{hour}H{minute}M{second}{frac}S"


def save_arrays(target: Path, **arrays: np.ndarray) -> None:
    """Arrays as safetensors (no pickle), written atomically."""
    from safetensors.numpy import save_file

    with atomic_path(target) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))
