"""The row sources of daar.read.formats, one per file format: each yields every row of a file in
order, with its position, its line where the format has lines, and a problem when the row is
unusable before any field check (see daar.read.formats for the reason wording and the rules).
JSON lines and arrays are read in daar.read.json_rows, Parquet and CSV here."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daar.read.json_rows import json_array_rows, jsonl_rows
from daar.read.raw import ESCAPED_BYTE, PoolError, RawRow, not_utf8, open_bytes


def raw_rows(path: Path, name: str) -> Iterator[RawRow]:
    """Yield every row of the file in order, positions counting from 0."""
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            yield from jsonl_rows(path)
        elif name.endswith((".json", ".json.gz")):
            yield from json_array_rows(path)
        elif name.endswith(".parquet"):
            yield from _parquet_rows(path)
        else:
            yield from _csv_rows(path)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err


# --- Parquet -------------------------------------------------------------------------------------


def _parquet_rows(path: Path) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as err:
        raise PoolError(f"{path}: cannot be read as parquet: {err}") from err
    names = table.column_names
    columns: list[list[Any]] = []
    problems: dict[int, str] = {}
    for name in names:
        values, bad = _column_values(_nanosecond_times_as_text(table.column(name)), name)
        columns.append(values)
        for position, problem in bad.items():
            problems.setdefault(position, problem)
    for position, values in enumerate(zip(*columns, strict=True)):
        yield RawRow(position, None, dict(zip(names, values, strict=True)), problems.get(position))


def _column_values(column: Any, name: str) -> tuple[list[Any], dict[int, str]]:
    """The column as Python values; a value Python cannot hold (a string that is not UTF-8, a date
    out of Python's range) rejects its row, not the file."""
    import pyarrow as pa

    errors = (UnicodeDecodeError, ValueError, OverflowError, pa.ArrowException)
    try:
        return column.to_pylist(), {}
    except errors:
        pass
    values: list[Any] = []
    problems: dict[int, str] = {}
    for position in range(len(column)):
        try:
            values.append(column[position].as_py())
        except errors as err:
            values.append(None)
            if isinstance(err, UnicodeDecodeError):
                problems[position] = f"field '{name}' is not valid UTF-8 ({err.reason} at byte {err.start})"
            else:
                problems[position] = f"field '{name}' cannot be read ({type(err).__name__}: {err})"
    return values, problems


def _nanosecond_times_as_text(column: Any) -> Any:
    """time64[ns] values become ISO text in Arrow ("01:02:03.000000001"): Python's time would
    drop the nanoseconds. (Timestamps and durations in ns keep theirs through pandas' types.)"""
    import pyarrow as pa

    target = _without_ns_times(column.type)
    if target.equals(column.type):
        return column
    try:
        return column.cast(target)
    except pa.ArrowException:  # a nesting Arrow cannot cast: keep microseconds rather than fail
        return column


def _without_ns_times(kind: Any) -> Any:
    import pyarrow as pa

    types = pa.types
    if types.is_time64(kind) and kind.unit == "ns":
        return pa.string()
    if types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind):
        item = kind.value_field
        new_item = item.with_type(_without_ns_times(item.type))
        if types.is_list(kind):
            return pa.list_(new_item)
        if types.is_large_list(kind):
            return pa.large_list(new_item)
        return pa.list_(new_item, kind.list_size)
    if types.is_struct(kind):
        return pa.struct(
            [kind.field(i).with_type(_without_ns_times(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    if types.is_map(kind):
        return pa.map_(kind.key_field, kind.item_field.with_type(_without_ns_times(kind.item_type)))
    return kind


# --- CSV -----------------------------------------------------------------------------------------


def _csv_rows(path: Path) -> Iterator[RawRow]:
    """CSV read by the csv module (quoted cells may hold commas, quotes and newlines): every cell
    is text, a cell that is not UTF-8 rejects its row, and each row knows the line it starts on."""
    with open_bytes(path) as handle:
        data = handle.read()
    if data.startswith(b"\xef\xbb\xbf"):  # a leading BOM is not data
        data = data[3:]
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long answers are normal cells
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise PoolError(f"{path}: cannot be read as csv: {err}") from err
    if header is None:
        raise PoolError(f"{path}: cannot be read as csv: the file is empty (no header row)")
    for cell in header:
        if ESCAPED_BYTE.search(cell):
            raise PoolError(f"{path}: cannot be read as csv: the header is not valid UTF-8")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise PoolError(f"{path}: cannot be read as csv: column '{duplicated[0]}' appears twice in the header")
    position = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield RawRow(position, line, problem=f"not valid CSV ({err})")
            position += 1
            continue
        if not cells:  # a blank line is not a row
            continue
        yield _csv_row(position, line, header, cells)
        position += 1


def _csv_row(position: int, line: int, header: list[str], cells: list[str]) -> RawRow:
    if len(cells) != len(header):
        plural = "cell" if len(cells) == 1 else "cells"
        return RawRow(position, line, problem=f"has {len(cells)} {plural} but the header names {len(header)} columns")
    raw = dict(zip(header, cells, strict=True))
    for name, cell in raw.items():
        if not cell.isascii() and ESCAPED_BYTE.search(cell):
            try:
                cell.encode("utf-8", errors="surrogateescape").decode("utf-8")
            except UnicodeDecodeError as err:
                return RawRow(position, line, raw, not_utf8(err, "of the cell", name))
    return RawRow(position, line, raw, view={name: (cell if cell else None) for name, cell in raw.items()})
