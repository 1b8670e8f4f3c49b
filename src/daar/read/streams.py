"""Reading a file from a given row on, without parsing the rows before it, and in pieces, so that
memory holds a block of rows rather than the file (pools scored block by block, daar.scale):

- JSON lines: one pass without JSON parsing counts the rows and notes the byte offset and line of
  every `every`-th row; a block then starts reading at its offset (a seek in a plain .jsonl file;
  in a .jsonl.gz the bytes before it are still decompressed, but not parsed).
- Parquet: record batches, row group by row group; row groups that end before the start row are
  skipped unread (their sizes are in the footer), so a block costs at most one row group of
  decoding before its rows.
- Arrow IPC (the data files of a Hugging Face `datasets` folder, `save_to_disk`; stream or file
  format): record batches of a memory-mapped file, so skipping one costs nothing.

Rows, positions, lines and reasons are those of the whole-file readers (daar.read.sources): the
same row functions run on the same values, a piece at a time.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from daar.read.columnar import COLUMNAR, arrow_batches, columnar_rows, parquet_file
from daar.read.json_rows import jsonl_rows
from daar.read.raw import PoolError, RawRow, open_bytes
from daar.read.sources import raw_rows
from daar.utils.inside import inside

_BOM = b"\xef\xbb\xbf"


def is_jsonl(name: str) -> bool:
    return name.lower().endswith((".jsonl", ".jsonl.gz"))


def index_jsonl(path: Path, every: int | None) -> tuple[int, list[tuple[int, int]]]:
    """The rows of a JSON lines file, and the (byte offset, line) where rows 0, every, 2 x every...
    start (none without `every`). A row is what daar.read.sources calls one: a line that is not
    blank, after a leading byte-order mark."""
    rows, offset, starts = 0, 0, []
    try:
        with open_bytes(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                size = len(line)
                if line_no == 1 and line.startswith(_BOM):
                    line = line[3:]
                if line.strip():
                    if every and rows % every == 0:
                        starts.append((offset, line_no))
                    rows += 1
                offset += size
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err
    return rows, starts


def count_rows(path: Path) -> int:
    """Rows of a data file, from a Parquet footer or Arrow batch headers; otherwise by reading."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return parquet_file(path).metadata.num_rows
    if name.endswith(".arrow"):
        return sum(batch.num_rows for batch in arrow_batches(path))
    if is_jsonl(name):
        return index_jsonl(path, None)[0]
    return sum(1 for _ in raw_rows(path, name))


def rows_from(path: Path, position: int = 0, seek: tuple[int, int] | None = None) -> Iterator[RawRow]:
    """The rows of `path` from `position` on (every row of a format read whole, skipped up to it).
    `seek`: the (byte offset, line) of row `position` in a JSON lines file, from `index_jsonl`."""
    name = path.name.lower()
    if name.endswith(COLUMNAR):
        yield from columnar_rows(path, position)
        return
    if is_jsonl(name) and seek is not None:
        rows = _jsonl_from(path, position, *seek)
    else:
        rows = (row for row in raw_rows(path, name) if row.position >= position)
    yield from rows


def _jsonl_from(path: Path, position: int, offset: int, line: int) -> Iterator[RawRow]:
    try:
        yield from jsonl_rows(path, (position, offset, line))
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PoolError(f"{path}: cannot be read: {err}") from err


# --- Hugging Face `datasets` folders -------------------------------------------------------------


def split_names(folder: Path) -> list[str] | None:
    """The splits of a `DatasetDict.save_to_disk` folder (its dataset_dict.json), or None for another folder."""
    splits = Path(folder) / "dataset_dict.json"
    if not splits.is_file():
        return None
    try:
        names = json.loads(splits.read_text(encoding="utf-8"))["splits"]
        iter(names)
    except (ValueError, KeyError, TypeError) as err:
        raise PoolError(f"{splits}: not a datasets split list ({err})") from err
    for i, name in enumerate(names):  # each split is a folder inside this one, never a way out of it
        inside(folder, name, f"{splits}: splits[{i}]", PoolError)
    return [str(s) for s in names]


def dataset_files(folder: Path) -> list[Path] | None:
    """The Arrow files of a `Dataset.save_to_disk` folder in row order, or None for another folder.
    A `DatasetDict` folder (one subfolder per split) is refused with the splits named: daar.read.hub
    picks its split first."""
    folder = Path(folder)
    names = split_names(folder)
    if names is not None:
        example = folder / names[0] if names else folder / "SPLIT"
        raise PoolError(
            f"{folder}: a datasets DatasetDict with splits {', '.join(names) or '(none)'}; "
            f"give --split NAME, or one split's folder, e.g. {example}"
        )
    state = folder / "state.json"
    if not (state.is_file() and (folder / "dataset_info.json").is_file()):
        return None
    try:
        entries = json.loads(state.read_text(encoding="utf-8"))["_data_files"]
        names = [entry["filename"] for entry in entries]
    except (ValueError, KeyError, TypeError) as err:
        raise PoolError(f"{state}: not a datasets state file ({type(err).__name__}: {err})") from err
    # a data file is a name inside the folder: "../outside.arrow" or a link out would read rows never given
    files = [inside(folder, name, f"{state}: _data_files[{i}].filename", PoolError) for i, name in enumerate(names)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise PoolError(f"{folder}: datasets folder without its data file {missing[0]} (named in state.json)")
    if not files:
        raise PoolError(f"{folder}: datasets folder with no data file in state.json")
    return [f.resolve() for f in files]
