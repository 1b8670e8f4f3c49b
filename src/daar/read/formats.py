"""Reading pools from disk: JSON lines (plain or gzip), JSON arrays, Parquet and CSV.

A line that cannot be decoded becomes a rejection with its line number instead of aborting the
run; only a file that cannot be opened at all (or holds no usable row) stops with an error.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daar.config import FieldMap
from daar.errors import UserError
from daar.read.records import Record, Rejection, RowError, to_record

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")


class PoolError(UserError):
    """The file as a whole cannot be used (missing, unreadable, unknown format, no usable row)."""


@dataclass
class Pool:
    """What reading a file gives: usable records, rejected rows, and where they came from."""

    path: Path
    records: list[Record]
    rejected: list[Rejection] = field(default_factory=list)
    rows_in: int = 0
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]

    def subset(self, indices: list[int] | Any) -> Pool:
        """A pool of some of these records (positions keep pointing at the original file)."""
        chosen = [self.records[int(i)] for i in indices]
        return Pool(self.path, chosen, [], len(chosen), self.sha256)


def read_pool(path: str | Path, fields: FieldMap | None = None) -> Pool:
    """Read every row of `path`; bad rows are rejected with a reason, never dropped silently."""
    path = Path(path)
    fields = fields or FieldMap()
    if not path.exists():
        raise PoolError(f"{path}: no such file")
    if path.is_dir():
        raise PoolError(f"{path}: is a folder, expected a data file ({', '.join(SUFFIXES)})")
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise PoolError(f"{path}: unknown format; expected one of {', '.join(SUFFIXES)}")
    records: list[Record] = []
    rejected: list[Rejection] = []
    seen: dict[str, int] = {}
    rows_in = 0
    for position, raw, error in _raw_rows(path, name):
        rows_in += 1
        if error is not None:
            rejected.append(Rejection(position, None, error))
            continue
        try:
            record = to_record(raw, position, fields)
        except RowError as err:
            row_id = raw.get(fields.id) if isinstance(raw, dict) else None
            rejected.append(Rejection(position, None if row_id is None else str(row_id), str(err)))
            continue
        if record.id in seen:
            rejected.append(
                Rejection(position, record.id, f"duplicate id '{record.id}' (first seen at row {seen[record.id]})")
            )
            continue
        seen[record.id] = position
        records.append(record)
    if not records:
        detail = f"; first problem: row {rejected[0].position}: {rejected[0].reason}" if rejected else ""
        raise PoolError(f"{path}: no usable row among {rows_in}{detail}")
    return Pool(path, records, rejected, rows_in, file_sha256(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _raw_rows(path: Path, name: str) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (row position, raw row, error); positions count from 0 in file order."""
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            yield from _jsonl_rows(path)
        elif name.endswith((".json", ".json.gz")):
            yield from _json_array_rows(path)
        elif name.endswith(".parquet"):
            yield from _table_rows(path, "parquet")
        else:
            yield from _table_rows(path, "csv")
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    position = 0
    with _open_bytes(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8-sig" if line_no == 1 else "utf-8")  # a leading BOM is not data
            except UnicodeDecodeError as err:
                yield position, None, f"line {line_no}: not valid UTF-8 ({err.reason} at byte {err.start})"
            else:
                try:
                    yield position, json.loads(text), None
                except json.JSONDecodeError as err:
                    yield position, None, f"line {line_no}: not valid JSON ({err.msg})"
            position += 1


def _json_array_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    with _open_bytes(path) as handle:
        data = handle.read()
    try:
        rows = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise PoolError(f"{path}: not valid UTF-8 at byte {err.start}") from err
    except json.JSONDecodeError as err:
        raise PoolError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
    if not isinstance(rows, list):
        raise PoolError(f"{path}: a .json pool must be an array of rows")
    for position, row in enumerate(rows):
        yield position, row, None


def _table_rows(path: Path, kind: str) -> Iterator[tuple[int, Any, str | None]]:
    import pyarrow as pa

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            # Quoted cells may hold newlines (code, multi-line answers): the parser must know, or
            # files over one read block (1 MB) fail to parse.
            parse = pcsv.ParseOptions(newlines_in_values=True)
            with pcsv.open_csv(path, parse_options=parse) as reader:
                names = reader.schema.names
            # CSV cells are text: every column is read as bytes and decoded per row, so "42" stays
            # "42" (not an int the row checks would reject), "NA"/"null" stay text, and a cell that
            # is not UTF-8 rejects its row instead of the whole file.
            convert = pcsv.ConvertOptions(
                column_types={name: pa.binary() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            )
            table = pcsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowException as err:
        raise PoolError(f"{path}: cannot be read as {kind}: {err}") from err
    for position, row in enumerate(table.to_pylist()):
        if kind == "csv":
            yield (position, *_decode_cells(row))
        else:
            yield position, row, None


def _decode_cells(row: dict[str, bytes | None]) -> tuple[dict[str, str | None] | None, str | None]:
    decoded: dict[str, str | None] = {}
    for name, value in row.items():
        try:
            decoded[name] = None if value is None else value.decode("utf-8")
        except UnicodeDecodeError as err:
            return None, f"column '{name}': not valid UTF-8 ({err.reason} at byte {err.start})"
    return decoded, None
