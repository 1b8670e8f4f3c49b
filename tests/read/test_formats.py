"""Reading pools from every supported file format, and the file-level failures.

Each format is written for real in tmp_path with the same rows; the reader must give the same
records from all of them, and a file it cannot use at all must stop with a PoolError naming it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daar.read import SUFFIXES, PoolError, read_pool

# Five rows with the awkward bits a CSV or JSON writer must quote: commas, quotes, newlines,
# non-ASCII text, an empty input and surrounding spaces (stripped by the reader).
FIVE = [
    {"id": "r1", "instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"id": "r2", "instruction": "Translate to English", "input": "bonjour, le monde", "output": "hello, world"},
    {"id": "r3", "instruction": 'Say "hi"\non two lines', "input": "", "output": "hi,\nthere"},
    {"id": "r4", "instruction": "Écris une phrase — café", "input": "x", "output": "ünïcödé ✓ 漢字"},
    {"id": "r5", "instruction": "  padded  ", "input": "", "output": " ok "},
]
EXPECTED = [
    (0, "r1", "Add 2 and 3.", "", "5"),
    (1, "r2", "Translate to English", "bonjour, le monde", "hello, world"),
    (2, "r3", 'Say "hi"\non two lines', "", "hi,\nthere"),
    (3, "r4", "Écris une phrase — café", "x", "ünïcödé ✓ 漢字"),
    (4, "r5", "padded", "", "ok"),
]


def _jsonl_bytes(rows: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _csv_bytes(rows: list[dict]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_format(folder: Path, suffix: str, rows: list[dict]) -> Path:
    """Write `rows` as a real file of the given kind."""
    path = folder / f"pool{suffix}"
    if suffix == ".jsonl":
        path.write_bytes(_jsonl_bytes(rows))
    elif suffix == ".jsonl.gz":
        path.write_bytes(gzip.compress(_jsonl_bytes(rows)))
    elif suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif suffix == ".json.gz":
        path.write_bytes(gzip.compress(json.dumps(rows).encode("utf-8")))
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".arrow":  # the stream format of a `datasets` folder's data files
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    elif suffix == ".csv":
        path.write_bytes(_csv_bytes(rows))
    elif suffix == ".csv.gz":
        path.write_bytes(gzip.compress(_csv_bytes(rows)))
    else:  # pragma: no cover - the parametrisation lists only the suffixes above
        raise AssertionError(suffix)
    return path


def _fields(pool) -> list[tuple]:
    return [(r.position, r.id, r.instruction, r.input, r.output) for r in pool.records]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_format_gives_the_same_records(tmp_path, suffix):
    path = write_format(tmp_path, suffix, FIVE)
    pool = read_pool(path)
    assert _fields(pool) == EXPECTED
    assert pool.rows_in == 5 and pool.rejected == [] and len(pool) == 5
    assert pool.ids == ["r1", "r2", "r3", "r4", "r5"]
    assert pool.texts[0] == "Instruction: Add 2 and 3.\nOutput: 5"
    assert pool.texts[1] == "Instruction: Translate to English\nInput: bonjour, le monde\nOutput: hello, world"
    assert pool.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pool.path == path
    # the raw row is kept unchanged (selected.jsonl writes it back)
    assert pool.records[3].raw["instruction"] == "Écris une phrase — café"


def test_the_suffix_list_covers_the_issue_formats():
    for suffix in (".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv"):
        assert suffix in SUFFIXES


def test_suffix_is_case_insensitive(tmp_path):
    path = tmp_path / "POOL.JSONL"
    path.write_bytes(_jsonl_bytes(FIVE))
    assert _fields(read_pool(path)) == EXPECTED


def test_json_object_with_data_array(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text(json.dumps({"data": FIVE}), encoding="utf-8")
    assert _fields(read_pool(path)) == EXPECTED


def test_chat_rows_in_parquet_match_jsonl(tmp_path):
    rows = [
        {
            "id": f"c{i}",
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ],
        }
        for i in range(3)
    ]
    from_jsonl = read_pool(write_format(tmp_path, ".jsonl", rows))
    from_parquet = read_pool(write_format(tmp_path, ".parquet", rows))
    assert _fields(from_parquet) == _fields(from_jsonl)
    assert _fields(from_jsonl)[2] == (2, "c2", "user: question 2", "", "answer 2")


def test_csv_cells_stay_text(tmp_path):
    """Numbers and null-looking words in a CSV are the row's text, not ints or missing values."""
    path = tmp_path / "pool.csv"
    path.write_text(
        "id,instruction,output\n007,What is 6*7?,42\n008,Spell the word NA,NA\n009,What is null in SQL?,null\n",
        encoding="utf-8",
    )
    pool = read_pool(path)
    assert pool.rejected == []
    assert _fields(pool) == [
        (0, "007", "What is 6*7?", "", "42"),
        (1, "008", "Spell the word NA", "", "NA"),
        (2, "009", "What is null in SQL?", "", "null"),
    ]


def test_csv_without_id_column_uses_positions_and_rejects_empty_cells(tmp_path):
    """CSV has no null: an empty cell is a missing value, a blank one an empty value."""
    path = tmp_path / "pool.csv"
    path.write_text("instruction,input,output\nWhat is 1+1?,,2\nName a colour,,\n,,orphan\n  ,,x\n", encoding="utf-8")
    pool = read_pool(path)
    assert _fields(pool) == [(0, "#0", "What is 1+1?", "", "2")]
    assert pool.records[0].raw == {"instruction": "What is 1+1?", "input": "", "output": "2"}  # cells as written
    assert [(r.position, r.id) for r in pool.rejected] == [(1, None), (2, None), (3, None)]
    assert pool.rejected[0].reason == "pool.csv row 1 (line 3): field 'output' is missing"
    assert pool.rejected[1].reason == "pool.csv row 2 (line 4): field 'instruction' is missing"
    assert pool.rejected[2].reason == "pool.csv row 3 (line 5): field 'instruction' is empty"
    assert pool.rows_in == 4


def test_csv_with_multiline_cells_larger_than_one_read_block(tmp_path):
    """Code answers span lines; a CSV over pyarrow's 1 MB block must still split rows correctly."""
    rows = [
        {"id": f"k{i}", "instruction": f"Write f{i}", "output": f"def f{i}():\n    return {i}\n" * 12}
        for i in range(6000)
    ]
    path = write_format(tmp_path, ".csv", rows)
    assert path.stat().st_size > 2 * 1024 * 1024
    pool = read_pool(path)
    assert pool.rows_in == 6000 and pool.rejected == []
    assert pool.ids == [r["id"] for r in rows]
    assert [r.output for r in pool.records[-2:]] == [r["output"].strip() for r in rows[-2:]]


def test_csv_cell_that_is_not_utf8_rejects_only_its_row(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_bytes(b"id,instruction,output\na,caf\xe9 au lait,x\nb,good,row\nc,fine,also\xff\n")
    pool = read_pool(path)
    assert _fields(pool) == [(1, "b", "good", "", "row")]
    assert [r.position for r in pool.rejected] == [0, 2]
    assert pool.rejected[0].reason == (
        "pool.csv row 0 (line 2): field 'instruction' is not valid UTF-8 "
        "(invalid continuation byte at byte 3 of the cell)"
    )
    assert pool.rejected[1].reason == (
        "pool.csv row 2 (line 4): field 'output' is not valid UTF-8 (invalid start byte at byte 4 of the cell)"
    )
    assert pool.rows_in == 3


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_utf8_byte_order_mark_is_not_data(tmp_path, suffix):
    """Files saved by Windows tools start with a BOM; the first row must still be read."""
    path = write_format(tmp_path, suffix, FIVE)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    pool = read_pool(path)
    assert _fields(pool) == EXPECTED and pool.rejected == []


def test_blank_lines_are_not_rows(tmp_path):
    path = tmp_path / "pool.jsonl"
    lines = _jsonl_bytes(FIVE).split(b"\n")
    path.write_bytes(b"\n\n" + b"\n   \n".join(lines))
    pool = read_pool(path)
    assert _fields(pool) == EXPECTED and pool.rows_in == 5


def test_real_pool_rows_read_the_same_from_jsonl_gz_and_parquet(tmp_path, real_rows):
    gz = read_pool(write_format(tmp_path, ".jsonl.gz", real_rows))
    table = read_pool(write_format(tmp_path, ".parquet", real_rows))
    assert gz.rows_in == table.rows_in == len(gz) == 400
    assert gz.rejected == [] and table.rejected == []
    assert gz.ids == [str(r["id"]) for r in real_rows]
    assert _fields(gz) == _fields(table)
    first = gz.records[0]
    assert first.instruction == real_rows[0]["instruction"].strip()
    assert first.output == real_rows[0]["output"].strip()
    # extra columns (domain, source) are carried in raw, untouched
    assert first.raw == real_rows[0]


def test_real_rows_with_bad_lines_keep_every_row_accounted_for(tmp_path, real_rows):
    good = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in real_rows[:50]]
    bad_at = {3: b"{not json", 10: b'{"instruction": "caf\xe9", "output": "x"}', 20: b"[1, 2]", 30: b'"text"'}
    lines: list[bytes] = []
    for position in range(len(good) + len(bad_at)):
        lines.append(bad_at[position] if position in bad_at else good.pop(0))
    path = tmp_path / "pool.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    pool = read_pool(path)
    assert pool.rows_in == 54 == len(pool.records) + len(pool.rejected)
    assert [r.position for r in pool.rejected] == [3, 10, 20, 30]
    assert sorted([r.position for r in pool.records] + [r.position for r in pool.rejected]) == list(range(54))
    assert pool.ids == [str(r["id"]) for r in real_rows[:50]]


# --- files that cannot be used at all ------------------------------------------------------------


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.jsonl"


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "adir.jsonl"
    folder.mkdir()
    return folder


def _unknown_suffix(tmp_path: Path) -> Path:
    path = tmp_path / "pool.txt"
    path.write_bytes(_jsonl_bytes(FIVE))
    return path


def _fake_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "pool.parquet"
    path.write_bytes(_jsonl_bytes(FIVE))
    return path


def _not_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl.gz"
    path.write_bytes(_jsonl_bytes(FIVE))
    return path


def _truncated_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl_bytes(FIVE * 20))[:-40])
    return path


def _corrupt_gzip(tmp_path: Path) -> Path:
    data = bytearray(gzip.compress(_jsonl_bytes(FIVE * 50)))
    data[60:80] = b"\x00" * 20
    path = tmp_path / "pool.jsonl.gz"
    path.write_bytes(bytes(data))
    return path


def _bad_json_array(tmp_path: Path) -> Path:
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(FIVE)[:-10], encoding="utf-8")
    return path


def _json_not_array(tmp_path: Path) -> Path:
    path = tmp_path / "pool.json"
    path.write_text(json.dumps({"rows": FIVE}), encoding="utf-8")
    return path


def _json_not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "pool.json"
    path.write_bytes(b'[{"instruction": "caf\xe9", "output": "x"}]')
    return path


def _empty_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pool.csv"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_missing, "no such file"),
        (_folder, "is a folder"),
        (_unknown_suffix, "unknown format"),
        (_fake_parquet, "cannot be read as parquet"),
        (_not_gzip, "cannot be read"),
        (_truncated_gzip, "cannot be read"),
        (_corrupt_gzip, "cannot be read"),
        (_bad_json_array, "not valid JSON"),
        (_json_not_array, "must be an array"),
        (_json_not_utf8, "not valid UTF-8"),
        (_empty_csv, "cannot be read as csv"),
    ],
)
def test_unreadable_file_raises_pool_error_naming_it(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(PoolError) as caught:
        read_pool(path)
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_pool_error_is_a_value_error():
    assert issubclass(PoolError, ValueError)


def test_no_usable_row_stops_with_the_first_problem(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b'{"instruction": "q"}\n{broken\n[1]\n')
    with pytest.raises(PoolError) as caught:
        read_pool(path)
    message = str(caught.value)
    assert str(path) in message
    assert "no usable row among 3" in message
    assert "first problem: pool.jsonl row 0 (line 1): field 'output' is missing" in message


@pytest.mark.parametrize("content", [b"", b"\n\n", b"instruction,output\n"])
def test_file_with_no_rows_stops(tmp_path, content):
    path = tmp_path / ("pool.csv" if content.startswith(b"instruction") else "pool.jsonl")
    path.write_bytes(content)
    with pytest.raises(PoolError, match="no usable row among 0"):
        read_pool(path)


def test_one_usable_row_is_enough(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b'{broken\n{"instruction": "q", "output": "a"}\n[1]\n')
    pool = read_pool(path)
    assert _fields(pool) == [(1, "#1", "q", "", "a")]
    assert [r.position for r in pool.rejected] == [0, 2]
    assert pool.rows_in == 3


def test_subset_keeps_original_positions(tmp_path):
    pool = read_pool(write_format(tmp_path, ".jsonl", FIVE))
    part = pool.subset([4, 1])
    assert [(r.position, r.id) for r in part.records] == [(4, "r5"), (1, "r2")]
    assert part.rows_in == 2 and part.rejected == [] and part.sha256 == pool.sha256


def test_alpaca_and_chat_rows_mix_in_one_parquet_file(tmp_path):
    """Every Parquet row has every column: a chat column holding null is no chat row."""
    rows = [
        {"id": "a", "instruction": "q", "output": "x", "messages": None},
        {"id": "c", "messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "v"}]},
    ]
    pool = read_pool(write_format(tmp_path, ".parquet", rows))
    assert pool.rejected == []
    assert _fields(pool) == [(0, "a", "q", "", "x"), (1, "c", "user: u", "", "v")]


def test_csv_cell_larger_than_one_read_block_and_rows_with_wrong_cell_counts(tmp_path):
    """One answer over 1 MB is a normal cell; a row with too many or too few cells rejects only itself."""
    path = tmp_path / "pool.csv"
    path.write_text(f"id,instruction,output\na,q,{'x' * 3_000_000}\nb,q,y,extra\nc,q\nd,q,z\n", encoding="utf-8")
    pool = read_pool(path)
    assert pool.ids == ["a", "d"] and len(pool.records[0].output) == 3_000_000
    assert [(r.position, r.reason) for r in pool.rejected] == [
        (1, "pool.csv row 1 (line 3): has 4 cells but the header names 3 columns"),
        (2, "pool.csv row 2 (line 4): has 2 cells but the header names 3 columns"),
    ]
