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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daar.config import FieldMap
from daar.read.records import Record, Rejection, RowError, duplicate_id_problem, free_positional_id, to_record
from daar.read.sources import PoolError, RawRow, raw_rows
from daar.utils.cache import UnwritableValue, json_line

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".arrow", ".csv", ".csv.gz")



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
    seen: dict[str, int] = {}  # explicit id -> position of the row that kept it
    # Rows parsed from JSON or CSV text hold only JSON's own types (NaN and unpaired surrogates
    # included, which json_line writes): only Parquet and Arrow rows can hold a value with no JSON form.
    check_writable = name.endswith((".parquet", ".arrow"))
    rows_in = 0
    for row in raw_rows(path, name):
        rows_in += 1
        result = read_row(path, row, fields, check_writable)
        if isinstance(result, Rejection):
            rejected.append(result)
            continue
        if result.explicit_id and result.id in seen:
            problem = duplicate_id_problem(fields.id, result.id, f"row {seen[result.id]}")
            rejected.append(_rejection(path, row, result.id, problem))
            continue
        if result.explicit_id:
            seen[result.id] = row.position
        records.append(result)
    if not records:
        detail = f"; first problem: {rejected[0].reason}" if rejected else ""
        raise PoolError(f"{path}: no usable row among {rows_in}{detail}")
    return Pool(path, _distinct_positional_ids(records, seen), rejected, rows_in, file_sha256(path))


def read_row(path: Path, row: RawRow, fields: FieldMap, check_writable: bool, offset: int = 0) -> Record | Rejection:
    """One raw row as a record or a reasoned rejection, duplicates aside (they need every earlier
    row). `offset` places the row among the rows of earlier shards: the record's position and
    positional id count from there, while the reason names the row within its own file."""
    if row.problem is not None:
        return _rejection(path, row, _raw_id(row.raw, fields), row.problem, offset)
    try:
        record = to_record(row.raw if row.view is None else row.view, offset + row.position, fields)
    except RowError as err:
        return _rejection(path, row, _raw_id(row.raw, fields), str(err), offset)
    if row.view is not None:
        record = replace(record, raw=row.raw)
    problem = _unwritable(row.raw) if check_writable else None
    if problem is not None:
        return _rejection(path, row, record.id if record.explicit_id else None, problem, offset)
    return record


def _rejection(path: Path, row: RawRow, row_id: str | None, problem: str, offset: int = 0) -> Rejection:
    line = f" (line {row.line})" if row.line is not None else ""
    return Rejection(offset + row.position, row_id, f"{path.name} row {row.position}{line}: {problem}")


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


def _distinct_positional_ids(records: list[Record], explicit: dict[str, int]) -> list[Record]:
    """Give a row without id "##17" instead of "#17" when the file's own ids include "#17"."""
    for i, record in enumerate(records):
        if not record.explicit_id and record.id in explicit:
            records[i] = replace(record, id=free_positional_id(record.id, explicit))
    return records


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

