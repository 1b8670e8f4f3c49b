"""The row sources of daar.read.formats, one per file format: each yields every row of a file in
order, with its position, its line where the format has lines, and a problem when the row is
unusable before any field check (see daar.read.formats for the reason wording and the rules)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daar.errors import UserError

# Bytes that are not UTF-8, decoded with errors="surrogateescape", become U+DC80..U+DCFF.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_WHITESPACE = re.compile(r"[ \t\n\r]*")


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


def raw_rows(path: Path, name: str) -> Iterator[RawRow]:
    """Yield every row of the file in order, positions counting from 0."""
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            yield from _jsonl_rows(path)
        elif name.endswith((".json", ".json.gz")):
            yield from _json_array_rows(path)
        elif name.endswith(".parquet"):
            yield from _parquet_rows(path)
        elif name.endswith(".arrow"):
            from daar.read.streams import columnar_rows

            yield from columnar_rows(path)
        else:
            yield from _csv_rows(path)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


# --- JSON lines and JSON arrays ------------------------------------------------------------------


def _jsonl_rows(path: Path, start: tuple[int, int, int] = (0, 0, 1)) -> Iterator[RawRow]:
    """Rows from `start` = (position, byte offset, line) on; daar.read.streams finds the offsets."""
    position, offset, first_line = start
    with _open_bytes(path) as handle:
        if offset:
            handle.seek(offset)
        for line_no, line in enumerate(handle, start=first_line):
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):  # a leading BOM is not data
                line = line[3:]
            if not line.strip():
                continue
            try:
                text, bad_utf8 = line.decode("utf-8"), None
            except UnicodeDecodeError as err:
                text, bad_utf8 = line.decode("utf-8", errors="surrogateescape"), err
            row = RawRow(position, line_no)
            try:
                row.raw = json.loads(text)
            except json.JSONDecodeError as err:
                row.problem = (
                    _not_utf8(bad_utf8, "of the line")
                    if bad_utf8
                    else f"not valid JSON ({err.msg} at column {err.colno})"
                )
            except RecursionError:
                row.problem = "not valid JSON (nested too deeply to read)"
            except ValueError as err:  # e.g. an integer of more than 4300 digits
                row.problem = f"not valid JSON ({err})"
            else:
                if bad_utf8 is not None:
                    row.problem = _not_utf8(bad_utf8, "of the line", _escaped_field(row.raw))
            yield row
            position += 1


def _not_utf8(err: UnicodeDecodeError, within: str, field_name: str | None = None) -> str:
    what = f"field '{field_name}' is" if field_name else "row is"
    return f"{what} not valid UTF-8 ({err.reason} at byte {err.start} {within})"


def _escaped_field(value: Any, where: str = "") -> str | None:
    """The first field (dotted path) whose key or text holds bytes that were not UTF-8."""
    if isinstance(value, str):
        return where if _ESCAPED_BYTE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if _ESCAPED_BYTE.search(str(key)):
                return path
            found = _escaped_field(item, path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _escaped_field(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def _json_array_rows(path: Path) -> Iterator[RawRow]:
    with _open_bytes(path) as handle:
        data = handle.read()
    try:
        text, bad_utf8 = data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        text, bad_utf8 = data.decode("utf-8-sig", errors="surrogateescape"), err
    try:
        elements = _top_level_rows(text, path)
    except PoolError:
        raise
    except json.JSONDecodeError as err:
        if bad_utf8 is not None:  # bytes that are not UTF-8 outside any string break the JSON
            raise PoolError(f"{path}: not valid UTF-8 at byte {bad_utf8.start}") from err
        raise PoolError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    except RecursionError as err:
        raise PoolError(f"{path}: not valid JSON (a row is nested too deeply to read)") from err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise PoolError(f"{path}: not valid JSON ({err})") from err
    for position, (value, line, start, end) in enumerate(elements):
        row = RawRow(position, line, value)
        if bad_utf8 is not None and _ESCAPED_BYTE.search(text, start, end):
            row.problem = _not_utf8_in_array(value, text, start, end)
        yield row


def _not_utf8_in_array(value: Any, text: str, start: int, end: int) -> str:
    found = _ESCAPED_BYTE.search(text, start, end)
    assert found is not None
    byte = ord(found.group()) - 0xDC00
    name = _escaped_field(value)
    what = f"field '{name}' is" if name else "row is"
    line = text.count("\n", 0, found.start()) + 1
    return f"{what} not valid UTF-8 (byte 0x{byte:02x} at line {line})"


def _top_level_rows(text: str, path: Path) -> list[tuple[Any, int, int, int]]:
    """(row, line, start, end) for each element of the top-level array, or of the "data" array
    member of a top-level object; raises JSONDecodeError where the text is not JSON."""
    decoder = json.JSONDecoder()
    i = _WHITESPACE.match(text, 0).end()
    if text.startswith("[", i):
        elements, end = _array_elements(decoder, text, i)
    elif text.startswith("{", i):
        elements, end = _data_member(decoder, text, i)
        if elements is None:
            raise PoolError(f"{path}: a .json pool must be an array of rows (or an object with a 'data' array)")
    else:
        value, end = decoder.raw_decode(text, i)  # raises for text that is not JSON at all
        raise PoolError(f"{path}: a .json pool must be an array of rows, not a {type(value).__name__}")
    end = _WHITESPACE.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return elements


def _array_elements(decoder: json.JSONDecoder, text: str, i: int) -> tuple[list[tuple[Any, int, int, int]], int]:
    """Parse the array starting at text[i] == '['; each element with its line and span."""
    elements: list[tuple[Any, int, int, int]] = []
    i = _WHITESPACE.match(text, i + 1).end()
    if text.startswith("]", i):
        return elements, i + 1
    line, counted = 1, 0
    while True:
        line += text.count("\n", counted, i)
        counted = i
        value, end = decoder.raw_decode(text, i)
        elements.append((value, line, i, end))
        i = _WHITESPACE.match(text, end).end()
        if text.startswith(",", i):
            i = _WHITESPACE.match(text, i + 1).end()
        elif text.startswith("]", i):
            return elements, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter or ']'", text, i)


def _data_member(decoder: json.JSONDecoder, text: str, i: int) -> tuple[list[tuple[Any, int, int, int]] | None, int]:
    """Parse the object starting at text[i] == '{'; the rows of its "data" member if that is an
    array (the last one wins, as in json.loads), else None."""
    rows: list[tuple[Any, int, int, int]] | None = None
    i = _WHITESPACE.match(text, i + 1).end()
    if text.startswith("}", i):
        return rows, i + 1
    while True:
        if not text.startswith('"', i):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = decoder.raw_decode(text, i)
        i = _WHITESPACE.match(text, i).end()
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        i = _WHITESPACE.match(text, i + 1).end()
        if key == "data" and text.startswith("[", i):
            rows, i = _array_elements(decoder, text, i)
        else:
            _, i = decoder.raw_decode(text, i)
            if key == "data":
                rows = None
        i = _WHITESPACE.match(text, i).end()
        if text.startswith(",", i):
            i = _WHITESPACE.match(text, i + 1).end()
        elif text.startswith("}", i):
            return rows, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter or '}'", text, i)


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
    with _open_bytes(path) as handle:
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
        if _ESCAPED_BYTE.search(cell):
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
        if not cell.isascii() and _ESCAPED_BYTE.search(cell):
            try:
                cell.encode("utf-8", errors="surrogateescape").decode("utf-8")
            except UnicodeDecodeError as err:
                return RawRow(position, line, raw, _not_utf8(err, "of the cell", name))
    return RawRow(position, line, raw, view={name: (cell if cell else None) for name, cell in raw.items()})
