"""Parquet and Arrow files as rows: whole (the in-memory reader) or from a row on, a record batch
at a time (pools scored block by block). Both turn columns into rows with the same code, so a
row, its position and its reason are the same whichever way the file is read.

Arrow IPC files are the data files of a Hugging Face `datasets` folder (`save_to_disk`, stream
format) or Feather v2 files (file format); Parquet row groups before the start row are skipped
unread (their sizes are in the footer), so a block costs at most one row group of decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daar.read.raw import PoolError, RawRow

COLUMNAR = (".parquet", ".arrow")
BATCH_ROWS = 4096  # rows converted to Python at a time from a Parquet row group


def parquet_rows(path: Path) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as err:
        raise PoolError(f"{path}: cannot be read as parquet: {err}") from err
    yield from table_rows(table, 0, 0)


def column_values(column: Any, name: str) -> tuple[list[Any], dict[int, str]]:
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


def nanosecond_times_as_text(column: Any) -> Any:
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


def columnar_rows(path: Path, start: int = 0) -> Iterator[RawRow]:
    """The rows of a Parquet or Arrow file from row `start` on, a record batch at a time."""
    import pyarrow as pa

    first = 0
    try:
        for piece in _batches(path, start):
            if isinstance(piece, int):  # a row group skipped unread: only its size
                first += piece
                continue
            if first + piece.num_rows > start:
                yield from table_rows(pa.Table.from_batches([piece]), first, start)
            first += piece.num_rows
    except pa.ArrowException as err:
        kind = "parquet" if path.name.lower().endswith(".parquet") else "Arrow"
        raise PoolError(f"{path}: cannot be read as {kind}: {err}") from err


def _batches(path: Path, start: int) -> Iterator[Any]:
    """Record batches of the file, or the row count of a row group skipped before `start`."""
    if path.name.lower().endswith(".parquet"):
        handle = parquet_file(path)
        for group in range(handle.num_row_groups):
            size = handle.metadata.row_group(group).num_rows
            if start >= size:
                start -= size
                yield size
                continue
            start = 0
            yield from handle.iter_batches(batch_size=BATCH_ROWS, row_groups=[group])
    else:
        yield from arrow_batches(path)


def table_rows(table: Any, first: int, start: int) -> Iterator[RawRow]:
    """The rows of a piece of a file (or of a dataset) whose first row is `first`, from `start` on."""
    names = table.column_names
    columns: list[list[Any]] = []
    problems: dict[int, str] = {}
    for name in names:
        values, bad = column_values(nanosecond_times_as_text(table.column(name)), name)
        columns.append(values)
        for position, problem in bad.items():
            problems.setdefault(position, problem)
    for i, values in enumerate(zip(*columns, strict=True)):
        if first + i >= start:
            yield RawRow(first + i, None, dict(zip(names, values, strict=True)), problems.get(i))


def parquet_file(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except pa.ArrowException as err:
        raise PoolError(f"{path}: cannot be read as parquet: {err}") from err
    except OSError as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err


def file_schema(path: Path) -> Any:
    """The Arrow schema of a Parquet or Arrow file (with a `datasets` file's features in its metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.name.lower().endswith(".parquet"):
        return pq.read_schema(path)
    try:
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_file(source).schema
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).schema
    except (OSError, pa.ArrowException) as err:
        raise PoolError(f"{path}: cannot be read as Arrow: {err}") from err


def arrow_batches(path: Path) -> Iterator[Any]:
    """Record batches of an Arrow IPC file in either layout: the file format (Feather v2) or the
    stream format that `datasets` writes."""
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path))
    except OSError as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err
    with source:
        try:
            reader = pa.ipc.open_file(source)
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                stream = pa.ipc.open_stream(source)
            except pa.ArrowException as err:
                raise PoolError(f"{path}: cannot be read as Arrow: {err}") from err
            yield from stream
            return
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
