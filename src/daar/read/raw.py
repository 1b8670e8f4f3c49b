"""What every row source of daar.read gives (`RawRow`), its file-level error, and the helpers the
sources share (see daar.read.formats for the reason wording and the rules)."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daar.errors import UserError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".arrow", ".csv", ".csv.gz")

# Bytes that are not UTF-8, decoded with errors="surrogateescape", become U+DC80..U+DCFF.
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


class PoolError(UserError):
    """The file as a whole cannot be used (missing, unreadable, unknown format, no usable row)."""


@dataclass
class RawRow:
    """One row as a format gives it: `problem` set when it is unusable before any field check;
    `view` (CSV) is what the field checks read when it differs from the row written back."""

    position: int
    line: int | None
    raw: Any = None
    problem: str | None = None
    view: dict[str, Any] | None = None


def open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def not_utf8(err: UnicodeDecodeError, within: str, field_name: str | None = None) -> str:
    what = f"field '{field_name}' is" if field_name else "row is"
    return f"{what} not valid UTF-8 ({err.reason} at byte {err.start} {within})"


def escaped_field(value: Any, where: str = "") -> str | None:
    """The first field (dotted path) whose key or text holds bytes that were not UTF-8."""
    if isinstance(value, str):
        return where if ESCAPED_BYTE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if ESCAPED_BYTE.search(str(key)):
                return path
            found = escaped_field(item, path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = escaped_field(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None
