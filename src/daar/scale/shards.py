"""A pool as one or many shard files, read in blocks of rows so that memory never holds the pool.

A pool is a file, a folder (its data files, sorted by name) or a glob. Its shards are numbered
in that order, and a row's `position` counts every row of every shard from 0 (rejected rows
included), so a single file keeps the positions and positional ids ("#<position>") that
`read_pool` gives it. A block is a run of `chunk_rows` consecutive rows of one shard: the unit
that is scored, written and resumed.

Blocks check each row as `read_pool` does (daar.read.read_row), except for duplicate ids: those
need every earlier row, so the cut over all scores finds them (daar.scale.cut).

A block is read without parsing the rows before it (daar.read.streams): planning notes the byte
offset of every block of a JSON lines shard, and Parquet and Arrow shards are read by record
batch. A Hugging Face `datasets` folder (`save_to_disk`) is a pool whose shards are its Arrow files.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daar.config import FieldMap
from daar.read import SUFFIXES, PoolError, Record, Rejection, file_sha256
from daar.read.formats import read_row
from daar.read.streams import COLUMNAR, count_rows, dataset_files, index_jsonl, is_jsonl, rows_from
from daar.utils.progress import progress_bar


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int  # rows of the file, rejected ones included
    offset: int  # rows of the shards before it
    sha256: str
    # JSON lines: (byte offset, line) of rows 0, every, 2 x every, ... (planning notes them; not
    # part of the plan, which names the file's content by its sha256 already)
    starts: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)
    every: int = field(default=0, compare=False, repr=False)

    def to_json(self) -> dict:
        return {"path": str(self.path), "rows": self.rows, "offset": self.offset, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict) -> Shard:
        return cls(Path(data["path"]), int(data["rows"]), int(data["offset"]), str(data["sha256"]))


@dataclass(frozen=True)
class Block:
    shard: int  # index into the plan's shards
    start: int  # first row within the shard
    stop: int
    seek: int | None = field(default=None, compare=False)  # byte offset of row `start` (JSON lines)
    line: int | None = field(default=None, compare=False)  # and its line

    @property
    def name(self) -> str:
        return f"{self.shard:05d}-{self.start:012d}"


@dataclass
class BlockRows:
    block: Block
    records: list[Record]
    rejected: list[Rejection]
    lines: dict[int, int | None]  # position -> line where the row starts, for reasons found later


def shard_paths(spec: str | Path | list[Path]) -> list[Path]:
    """The data files a pool names: a file, a folder's data files, a glob's matches, or a list of
    files (a dataset's Arrow files, daar.read.pool_files)."""
    if isinstance(spec, list):
        missing = [p for p in spec if not Path(p).is_file()]
        if missing or not spec:
            raise PoolError(f"{missing[0] if missing else 'an empty list of shards'}: no such file")
        return [Path(p).resolve() for p in spec]
    text = str(spec)
    path = Path(text)
    if path.is_dir() and (files := dataset_files(path)) is not None:
        return files
    if path.is_file():  # before the glob test: a file named "data[1].jsonl" is that file
        if not path.name.lower().endswith(SUFFIXES):
            raise PoolError(f"{path}: unknown format; expected one of {', '.join(SUFFIXES)}")
        return [path.resolve()]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))
        where = f"folder {path}"
    elif any(c in text for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(text) if p.lower().endswith(SUFFIXES) and Path(p).is_file())
        where = f"glob {text!r}"
    else:
        raise PoolError(f"{path}: no such file")
    if not found:
        raise PoolError(f"{where}: no data file ({', '.join(SUFFIXES)})")
    # absolute: plan.json, `select --scores` from elsewhere and Ray actors in their own folders
    return [p.resolve() for p in found]


def plan_shards(spec: str | Path | list[Path], every: int | None = None) -> list[Shard]:
    """Every shard with its row count and checksum, no row kept; with `every`, the byte offset of
    each block of `every` rows of a JSON lines shard, so that a block is read from there."""
    shards: list[Shard] = []
    offset = 0
    paths = shard_paths(spec)
    with progress_bar(transient=True) as bar:
        task = bar.add_task("counting rows", total=len(paths), info="shards")
        for path in paths:
            starts: list[tuple[int, int]] = []
            if is_jsonl(path.name):
                rows, starts = index_jsonl(path, every)
            else:
                rows = count_rows(path)
            shards.append(Shard(path, rows, offset, file_sha256(path), tuple(starts), every or 0))
            offset += rows
            bar.update(task, advance=1)
    return shards


def blocks_of(shards: list[Shard], chunk_rows: int) -> list[Block]:
    blocks = []
    for i, shard in enumerate(shards):
        noted = shard.every == chunk_rows and len(shard.starts) == -(-shard.rows // chunk_rows)
        for k, start in enumerate(range(0, shard.rows, chunk_rows)):
            seek, line = shard.starts[k] if noted else (None, None)
            blocks.append(Block(i, start, min(start + chunk_rows, shard.rows), seek, line))
    return blocks


def read_blocks(shard: Shard, index: int, blocks: list[Block], fields: FieldMap) -> Iterator[BlockRows]:
    """The rows of `blocks` (all of shard `index`, in order) in one pass over the file, from the
    first block's row on (its byte offset, or its record batch); rows between the blocks are
    skipped unchecked."""
    wanted = iter(sorted(blocks, key=lambda b: b.start))
    current = next(wanted, None)
    if current is None:
        return
    check_writable = shard.path.name.lower().endswith(COLUMNAR)
    rows: BlockRows | None = None
    seek = (current.seek, current.line) if current.seek is not None and current.line is not None else None
    for row in rows_from(shard.path, current.start, seek):
        while current is not None and row.position >= current.stop:
            if rows is not None:
                yield rows
                rows = None
            current = next(wanted, None)
        if current is None:
            return
        if row.position < current.start:
            continue
        if rows is None:
            rows = BlockRows(Block(index, current.start, current.stop), [], [], {})
        result = read_row(shard.path, row, fields, check_writable, shard.offset)
        (rows.rejected if isinstance(result, Rejection) else rows.records).append(result)
        rows.lines[shard.offset + row.position] = row.line
    if rows is not None:
        yield rows


def raw_rows_at(shard: Shard, positions: set[int]) -> Iterator[dict]:
    """The rows at these pool positions of `shard`, exactly as read, in file order."""
    for row in rows_from(shard.path):
        if shard.offset + row.position in positions:
            yield row.raw
