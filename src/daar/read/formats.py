"""Reading pools from disk: JSON lines (plain or gzip), JSON arrays, Parquet and CSV.

A row that cannot be used becomes a rejection with a reason instead of aborting the run; only a
file that cannot be opened or parsed as a whole (or holds no usable row) stops with a PoolError.

Every rejection reason reads "<file name> row <position> (line <n>): <what is wrong>":

- position counts the rows of the file from 0 in file order, rejected rows included (blank lines
  of a .jsonl or .csv file are not rows);
- the line (from 1, in the decompressed text) is where the row starts in the text formats (.jsonl,
  .json, .csv, gzipped or not); a Parquet row has no line and gives its position only;
- what is wrong names the field ("field 'output' must be a string, got int", "field 'id':
  duplicate id 'a7' (first seen at row 3)", "field 'instruction' is not valid UTF-8 (...)",
  "field 'messages[1].role' is given more than once (the row's text is ambiguous)"), or, when the
  row as a whole is unusable, says why ("not valid JSON (...)", "row is a list, expected an
  object", "row is null, expected an object", "has 4 cells but the header names 3 columns").

Per format: a .jsonl line that is not valid JSON rejects that row only; a .json file must parse as
a whole (an array of rows, or an object with one "data" member that is one), but bytes that are not
UTF-8 inside a row's strings reject that row only. A JSON object that gives a key twice rejects its
row: json would keep the last value without a word. CSV cells are text, and CSV has no null: an empty
cell is read as a missing value (an empty id cell means the row has no id, an empty output cell is
a missing output), while the row written back to selected.jsonl keeps its cells as they were.
A row must also be writable back as JSON (the forms in daar.utils.cache): every Parquet type has
one, so a value without one is rejected here, never a crash after the run's compute. A Parquet
value Python cannot hold at all (text that is not UTF-8, a date past the year 9999) rejects its
row, naming the field, instead of the file. An Arrow IPC file (`.arrow`, e.g. a data file of a
Hugging Face `datasets` folder) is read by record batch with Parquet's rules (daar.read.streams).
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daar.config import FieldMap
from daar.read.columnar import COLUMNAR, file_schema, table_rows
from daar.read.hub import ArrowDigest, DatasetPool, PoolSource, dataset_tables, open_pool
from daar.read.raw import SUFFIXES
from daar.read.records import Record, Rejection, RowError, duplicate_id_problem, free_positional_id, to_record
from daar.read.sources import PoolError, RawRow, raw_rows
from daar.read.streams import dataset_files
from daar.utils.cache import UnwritableValue, file_sha256, json_line


@dataclass
class Pool:
    """What reading a pool gives: usable records, rejected rows, and where they came from.

    `schema` is the Arrow schema of a Parquet, Arrow or `datasets` pool (None for text formats),
    so the selection can be written back as Parquet or a dataset with the types it had; `source`
    is the manifest's `input` (path and sha256, or the dataset's id, split and fingerprint)."""

    path: Path
    records: list[Record]
    rejected: list[Rejection] = field(default_factory=list)
    rows_in: int = 0
    sha256: str = ""
    schema: Any = None
    source: dict[str, Any] = field(default_factory=dict)

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
        return Pool(self.path, chosen, [], len(chosen), self.sha256, self.schema, self.source)


def check_pool(source: Any, split: str | None = None, subset: str | None = None) -> PoolSource:
    """What `source` names as a pool, opened (daar.read.hub.open_pool) and there: commands call it
    before they make their output folder, so that a mistyped name leaves nothing behind, and give
    its result to `read_pool` (a dataset id is loaded once)."""
    opened = open_pool(source, split, subset)
    if not isinstance(opened, DatasetPool) and not Path(opened).exists():
        raise PoolError(f"{Path(opened)}: no such file")
    return opened


def read_pool(
    source: Any, fields: FieldMap | None = None, *, split: str | None = None, subset: str | None = None
) -> Pool:
    """Read every row of a pool; bad rows are rejected with a reason, never dropped silently.

    `source`: a data file, a `datasets` folder (`save_to_disk`; a `DatasetDict` with `split`), a
    folder `datasets.load_dataset` reads (with `split` or `subset`), a hub dataset id, or a
    `datasets.Dataset` / `DatasetDict` (daar.read.hub)."""
    fields = fields or FieldMap()
    opened = open_pool(source, split, subset)
    if isinstance(opened, DatasetPool):
        return _read_dataset(opened, fields)
    path = Path(opened)
    if not path.exists():
        raise PoolError(f"{path}: no such file")
    files = dataset_files(path) if path.is_dir() else [path]
    if files is None:
        raise PoolError(f"{path}: is a folder, expected a data file ({', '.join(SUFFIXES)}) or a datasets folder")
    if not path.name.lower().endswith(SUFFIXES) and not path.is_dir():
        raise PoolError(f"{path}: unknown format; expected one of {', '.join(SUFFIXES)}")
    reading = _Reading(fields)
    for file in files:
        # Rows parsed from JSON or CSV text hold only JSON's own types (NaN and unpaired surrogates
        # included, which json_line writes): only Parquet and Arrow rows can hold a value with no JSON form.
        check_writable = file.name.lower().endswith(COLUMNAR)
        offset = reading.rows_in
        for row in raw_rows(file, file.name.lower()):
            reading.add(file.name, row, check_writable, offset)
    sha256 = file_sha256(path) if len(files) == 1 and files[0] == path else _files_sha256(files)
    schema = file_schema(files[0]) if files[0].name.lower().endswith(COLUMNAR) else None
    return reading.pool(path, sha256, schema, {"path": str(path.resolve()), "sha256": sha256})


def _read_dataset(pool: DatasetPool, fields: FieldMap) -> Pool:
    """A `datasets.Dataset`'s rows, a record batch at a time, checked as Arrow rows are."""
    reading = _Reading(fields)
    digest = ArrowDigest()
    schema = None
    for table in dataset_tables(pool):
        digest.update(table)
        schema = schema or table.schema
        for row in table_rows(table, reading.rows_in, reading.rows_in):
            reading.add(pool.name, row, True)
    sha256 = digest.hexdigest()
    return reading.pool(Path(pool.name), sha256, schema, pool.source | {"sha256": sha256})


class _Reading:
    """The rows read so far: records, reasoned rejections, and the explicit ids already kept."""

    def __init__(self, fields: FieldMap) -> None:
        self.fields = fields
        self.records: list[Record] = []
        self.rejected: list[Rejection] = []
        self.seen: dict[str, tuple[str, int]] = {}  # explicit id -> (file, row) that kept it
        self.rows_in = 0

    def add(self, where: str, row: RawRow, check_writable: bool, offset: int = 0) -> None:
        self.rows_in += 1
        result = read_row(where, row, self.fields, check_writable, offset)
        if isinstance(result, Rejection):
            self.rejected.append(result)
        elif result.explicit_id and result.id in self.seen:
            home, first = self.seen[result.id]
            there = "" if home == where else f"{home} "
            problem = duplicate_id_problem(self.fields.id, result.id, f"{there}row {first}")
            self.rejected.append(_rejection(where, row, result.id, problem, offset))
        else:
            if result.explicit_id:
                self.seen[result.id] = (where, row.position)
            self.records.append(result)

    def pool(self, path: Path, sha256: str, schema: Any, source: dict[str, Any]) -> Pool:
        if not self.records:
            detail = f"; first problem: {self.rejected[0].reason}" if self.rejected else ""
            raise PoolError(f"{path}: no usable row among {self.rows_in}{detail}")
        records = _distinct_positional_ids(self.records, self.seen)
        return Pool(path, records, self.rejected, self.rows_in, sha256, schema, source)


def read_row(
    where: Path | str, row: RawRow, fields: FieldMap, check_writable: bool, offset: int = 0
) -> Record | Rejection:
    """One raw row as a record or a reasoned rejection, duplicates aside (they need every earlier
    row). `where` is the file (or the dataset's name) the reason names. `offset` places the row
    among the rows of earlier shards: the record's position and positional id count from there,
    while the reason names the row within its own file."""
    if row.problem is not None:
        return _rejection(where, row, _raw_id(row.raw, fields), row.problem, offset)
    try:
        record = to_record(row.raw if row.view is None else row.view, offset + row.position, fields)
    except RowError as err:
        return _rejection(where, row, _raw_id(row.raw, fields), str(err), offset)
    if row.view is not None:
        record = replace(record, raw=row.raw)
    problem = _unwritable(row.raw) if check_writable else None
    if problem is not None:
        return _rejection(where, row, record.id if record.explicit_id else None, problem, offset)
    return record


def _rejection(where: Path | str, row: RawRow, row_id: str | None, problem: str, offset: int = 0) -> Rejection:
    line = f" (line {row.line})" if row.line is not None else ""
    name = where.name if isinstance(where, Path) else where
    return Rejection(offset + row.position, row_id, f"{name} row {row.position}{line}: {problem}")


def _raw_id(raw: Any, fields: FieldMap) -> str | None:
    value = raw.get(fields.id) if isinstance(raw, dict) else None
    return None if value is None else str(value)


def _unwritable(raw: Any) -> str | None:
    """Why `raw` cannot be written back to selected.jsonl, or None when it can."""
    try:
        json_line(raw)
    except UnwritableValue as err:
        return str(err)
    except RecursionError:
        return "row is nested too deeply to be written back as JSON"
    return None


def _distinct_positional_ids(records: list[Record], explicit: Container[str]) -> list[Record]:
    """Give a row without id "##17" instead of "#17" when the file's own ids include "#17"."""
    for i, record in enumerate(records):
        if not record.explicit_id and record.id in explicit:
            records[i] = replace(record, id=free_positional_id(record.id, explicit))
    return records


def _files_sha256(files: list[Path]) -> str:
    """A name of several files' content: the sha256 of their names and sha256s, in order."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file_sha256(file)}\0".encode())
    return digest.hexdigest()
