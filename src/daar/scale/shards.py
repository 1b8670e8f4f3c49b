"""A pool as one or many shard files, read in blocks of rows so that memory never holds the pool.

A pool is a file, a folder (its data files, sorted by name) or a glob. Its shards are numbered
in that order, and a row's `position` counts every row of every shard from 0 (rejected rows
included), so a single file keeps the positions and positional ids ("#<position>") that
`read_pool` gives it. A block is a run of `chunk_rows` consecutive rows of one shard: the unit
that is scored, written and resumed.

Blocks check each row as `read_pool` does (daar.read.read_row), except for duplicate ids: those
need every earlier row, so the cut over all scores finds them (daar.scale.cut).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from daar.config import FieldMap
from daar.read import SUFFIXES, PoolError, Record, Rejection, file_sha256
from daar.read.formats import read_row
from daar.read.sources import raw_rows
from daar.utils.progress import progress_bar


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int  # rows of the file, rejected ones included
    offset: int  # rows of the shards before it
    sha256: str

    def to_json(self) -> dict:
        return {**asdict(self), "path": str(self.path)}

    @classmethod
    def from_json(cls, data: dict) -> Shard:
        return cls(Path(data["path"]), int(data["rows"]), int(data["offset"]), str(data["sha256"]))


@dataclass(frozen=True)
class Block:
    shard: int  # index into the plan's shards
    start: int  # first row within the shard
    stop: int

    @property
    def name(self) -> str:
        return f"{self.shard:05d}-{self.start:012d}"


@dataclass
class BlockRows:
    block: Block
    records: list[Record]
    rejected: list[Rejection]
    lines: dict[int, int | None]  # position -> line where the row starts, for reasons found later


def shard_paths(spec: str | Path) -> list[Path]:
    """The data files a pool names: a file, a folder's data files, or a glob's matches."""
    text = str(spec)
    path = Path(text)
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


def plan_shards(spec: str | Path) -> list[Shard]:
    """Every shard with its row count and checksum: one pass over the bytes, no row kept."""
    shards: list[Shard] = []
    offset = 0
    paths = shard_paths(spec)
    with progress_bar(transient=True) as bar:
        task = bar.add_task("counting rows", total=len(paths), info="shards")
        for path in paths:
            rows = sum(1 for _ in raw_rows(path, path.name.lower()))
            shards.append(Shard(path, rows, offset, file_sha256(path)))
            offset += rows
            bar.update(task, advance=1)
    return shards


def blocks_of(shards: list[Shard], chunk_rows: int) -> list[Block]:
    return [
        Block(i, start, min(start + chunk_rows, shard.rows))
        for i, shard in enumerate(shards)
        for start in range(0, shard.rows, chunk_rows)
    ]


def read_blocks(shard: Shard, index: int, blocks: list[Block], fields: FieldMap) -> Iterator[BlockRows]:
    """The rows of `blocks` (all of shard `index`, in order) in one pass over the file; rows of
    other blocks are skipped unparsed by the field checks."""
    wanted = iter(sorted(blocks, key=lambda b: b.start))
    current = next(wanted, None)
    check_writable = shard.path.name.lower().endswith(".parquet")
    rows: BlockRows | None = None
    for row in raw_rows(shard.path, shard.path.name.lower()):
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
    for row in raw_rows(shard.path, shard.path.name.lower()):
        if shard.offset + row.position in positions:
            yield row.raw
