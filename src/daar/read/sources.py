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

from daar.read.columnar import columnar_rows, parquet_rows
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
            yield from parquet_rows(path)
        elif name.endswith(".arrow"):
            yield from columnar_rows(path)
        else:
            yield from _csv_rows(path)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err


# --- Parquet -------------------------------------------------------------------------------------


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
