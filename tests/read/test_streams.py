"""Reading a pool a block at a time (Parquet row groups, JSON lines from byte offsets, Arrow files
of a `datasets` folder) gives the rows, positions, lines and reasons of the whole-file readers."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fuzz_corpus import _corpus

from daar.config import FieldMap
from daar.read import Rejection, read_pool
from daar.read.formats import read_row
from daar.read.sources import raw_rows
from daar.read.streams import columnar_rows, count_rows, index_jsonl
from daar.scale.shards import blocks_of, plan_shards, read_blocks, shard_paths


def _whole(path: Path) -> list[tuple]:
    """Every row of the file as the whole-file reader gives it, checked as read_pool checks it."""
    check = path.name.endswith((".parquet", ".arrow"))
    return [_seen(row.line, read_row(path, row, FieldMap(), check)) for row in raw_rows(path, path.name.lower())]


def _seen(line, result) -> tuple:
    if isinstance(result, Rejection):
        return ("rejected", result.position, line, result.id, result.reason)
    return ("kept", result.position, line, result.id, result.text, json.dumps(result.raw, default=str))


def _bad(rows) -> int:
    """Rows a reader rejects: the bad ones, but duplicates (those need every earlier row)."""
    return sum(not row.good and row.kind != "duplicate_id" for row in rows)


def _by_blocks(path: Path, chunk_rows: int, one_at_a_time: bool) -> list[tuple]:
    """The shard read block by block, as the scorers read it: each block on its own (Ray) or all
    blocks in one pass (the local executor)."""
    (shard,) = plan_shards(path, chunk_rows)
    blocks = blocks_of([shard], chunk_rows)
    groups = [[b] for b in blocks] if one_at_a_time else [blocks]
    seen = []
    for group in groups:
        for rows in read_blocks(shard, 0, group, FieldMap()):
            results = sorted([*rows.records, *rows.rejected], key=lambda r: r.position)
            seen += [_seen(rows.lines[r.position], r) for r in results]
    return seen


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_jsonl_blocks_from_byte_offsets_read_as_the_whole_file(tmp_path, suffix):
    """The fuzz corpus: a byte-order mark, blank and CRLF lines, invalid JSON and UTF-8, chat rows."""
    path, rows = _corpus(suffix, tmp_path)
    whole = _whole(path)
    assert len(whole) == len(rows) and sum(s[0] == "rejected" for s in whole) == _bad(rows) > 900
    count, starts = index_jsonl(path, 97)
    assert count == len(rows) and len(starts) == -(-count // 97)
    text = gzip.decompress(path.read_bytes()) if suffix.endswith(".gz") else path.read_bytes()
    for k, (offset, line) in enumerate(starts):  # each noted offset is where its row's line starts
        assert offset == 0 or text[offset - 1 : offset] == b"\n"
        assert text[:offset].count(b"\n") + 1 == line == rows[97 * k].line
    for chunk in (97, 1400, 5000):
        assert _by_blocks(path, chunk, one_at_a_time=True) == whole
    assert _by_blocks(path, 97, one_at_a_time=False) == whole


def test_every_jsonl_block_has_its_offset(tmp_path):
    """Blank lines and a byte-order mark before row 0, whitespace-only lines between rows."""
    lines = [b"\xef\xbb\xbf\n", b"  \r\n"] + [
        b'{"instruction": "q%d", "output": "a"}\n' % i + (b"\t \n" if i % 3 == 0 else b"") for i in range(10)
    ]
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"".join(lines) + b'{"instruction": "last", "output": "no newline at the end"}')
    (shard,) = plan_shards(path, 4)
    blocks = blocks_of([shard], 4)
    assert [(b.start, b.stop, b.line) for b in blocks] == [(0, 4, 3), (4, 8, 9), (8, 11, 14)]
    assert all(b.seek is not None for b in blocks)
    assert _by_blocks(path, 4, one_at_a_time=True) == _whole(path)


def test_parquet_row_groups_read_as_the_whole_file(tmp_path, monkeypatch):
    """The fuzz corpus (row groups of 500 rows): bad UTF-8 in Arrow buffers, dates, chat structs."""
    import daar.read.columnar as columnar

    monkeypatch.setattr(columnar, "BATCH_ROWS", 128)  # pieces smaller than a row group, as for large groups
    path, rows = _corpus(".parquet", tmp_path)
    assert pq.ParquetFile(path).num_row_groups == 3 and count_rows(path) == len(rows)
    whole = _whole(path)
    assert sum(s[0] == "rejected" for s in whole) == _bad(rows) > 900
    for chunk in (97, 500, 5000):
        assert _by_blocks(path, chunk, one_at_a_time=True) == whole
    assert _by_blocks(path, 97, one_at_a_time=False) == whole
    start = 1234
    rest = [(r.position, r.problem, repr(r.raw)) for r in columnar_rows(path, start)]
    assert rest == [(r.position, r.problem, repr(r.raw)) for r in raw_rows(path, "x.parquet")][start:]


def test_a_datasets_folder_is_a_pool_of_its_arrow_files(tmp_path, real_rows):
    import datasets

    keys = ("id", "instruction", "input", "output")
    rows = [{k: r.get(k) for k in keys} for r in real_rows[:40]]
    rows[5]["output"] = None
    rows[33]["id"] = rows[2]["id"]  # a duplicate: found by the cut, not by the reader
    folder = tmp_path / "ds"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder), num_shards=3)
    shards = plan_shards(folder, 8)
    assert [s.path.name for s in shards] == [f"data-0000{i}-of-00003.arrow" for i in range(3)]
    assert [s.rows for s in shards] == [14, 13, 13] and [s.offset for s in shards] == [0, 14, 27]
    kept, rejected = [], []
    for index, shard in enumerate(shards):
        for block in blocks_of(shards, 8):
            if block.shard == index:
                for part in read_blocks(shard, index, [block], FieldMap()):
                    kept += part.records
                    rejected += part.rejected
    assert [r.raw for r in kept] == [r for i, r in enumerate(rows) if i != 5]
    assert [r.position for r in kept] == [i for i in range(40) if i != 5]
    assert [(r.position, r.reason) for r in rejected] == [
        (5, "data-00000-of-00003.arrow row 5: field 'output' is missing")
    ]
    # one Arrow file reads as a pool file too, with the reasons of the same rows
    pool = read_pool(shards[0].path)
    assert [r.reason for r in pool.rejected] == ["data-00000-of-00003.arrow row 5: field 'output' is missing"]

    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(ValueError, match=r"DatasetDict with splits train; give --split NAME, or one split's folder"):
        shard_paths(tmp_path / "dict")


def test_arrow_file_format_and_stream_format_read_alike(tmp_path):
    table = pa.table({"instruction": ["a", "b", None], "output": ["x", "y", "z"]})
    stream, file = tmp_path / "pool.arrow", tmp_path / "file" / "pool.arrow"
    file.parent.mkdir()
    with pa.OSFile(str(stream), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1)
    assert _whole(stream) == _whole(file)
    assert [s[:4] for s in _whole(file)] == [
        ("kept", 0, None, "#0"),
        ("kept", 1, None, "#1"),
        ("rejected", 2, None, None),
    ]
    (tmp_path / "bad.arrow").write_bytes(b"not arrow at all" * 4)
    with pytest.raises(ValueError, match="bad.arrow: cannot be read as Arrow"):
        list(columnar_rows(tmp_path / "bad.arrow"))


def test_a_block_of_one_big_file_starts_at_its_own_offset(tmp_path):
    """The last block of a file is read from its byte offset, not by reading the rows before it."""
    rng = random.Random(3)
    path = tmp_path / "big.jsonl"
    rows = [{"instruction": f"q{i}", "output": "a" * rng.randrange(1, 50)} for i in range(5000)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (shard,) = plan_shards(path, 1000)
    last = blocks_of([shard], 1000)[-1]
    with open(path, "rb") as handle:
        handle.seek(last.seek)
        assert json.loads(handle.readline())["instruction"] == "q4000"
    (rows,) = read_blocks(shard, 0, [last], FieldMap())
    assert [r.position for r in rows.records] == list(range(4000, 5000)) and rows.lines[4000] == 4001
