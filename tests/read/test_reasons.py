"""Every rejection reason names the file, the row (its position, and its line in the text formats)
and the field, or says why the row as a whole is unusable.

The reason reads "<file name> row <position> (line <n>): <what is wrong>"; Parquet rows have no
line. Each message the reader can give is produced here from a real file.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daar.read import PoolError, read_pool

GOOD = b'{"id": "g", "instruction": "q", "output": "a"}'
PREFIX = re.compile(r"^[\w.]+ row \d+( \(line \d+\))?: ")

# (the line written at position 1, line 2 of a .jsonl file, between two good rows; the reason after the prefix)
EVERY_JSONL_REASON = [
    (b"[1, 2]", "row is a list, expected an object"),
    (b"null", "row is null, expected an object"),
    (b"3", "row is an int, expected an object"),
    (b'{"id": 1.5, "instruction": "q", "output": "a"}', "field 'id' must be a string or integer, got float"),
    (b'{"id": false, "instruction": "q", "output": "a"}', "field 'id' must be a string or integer, got bool"),
    (b'{"id": " ", "instruction": "q", "output": "a"}', "field 'id' is empty"),
    (
        b'{"id": "x\\ud83d", "instruction": "q", "output": "a"}',
        "field 'id' is not valid Unicode text (unpaired surrogate U+D83D at character 1)",
    ),
    (b'{"instruction": "q"}', "field 'output' is missing"),
    (b'{"instruction": "q", "output": null}', "field 'output' is missing"),
    (b'{"output": "a"}', "field 'instruction' is missing"),
    (b'{"instruction": "q", "output": 17}', "field 'output' must be a string, got int"),
    (b'{"instruction": "q", "input": [1], "output": "a"}', "field 'input' must be a string, got list"),
    (b'{"instruction": {"a": 1}, "output": "a"}', "field 'instruction' must be a string, got dict"),
    (b'{"instruction": "q", "output": " \\n\\t"}', "field 'output' is empty"),
    (
        b'{"instruction": "q\\udc00", "output": "a"}',
        "field 'instruction' is not valid Unicode text (unpaired surrogate U+DC00 at character 1)",
    ),
    (b'{"messages": "hello"}', "field 'messages' must be a non-empty list of turns, got str"),
    (b'{"messages": []}', "field 'messages' must be a non-empty list of turns, got an empty list"),
    (b'{"messages": [3]}', "field 'messages[0]' must be an object, got int"),
    (b'{"messages": [{"content": "hi"}]}', "field 'messages[0]' has no role/from"),
    (b'{"messages": [{"role": "user", "content": [1]}]}', "field 'messages[0]' has no string content/value (got list)"),
    (b'{"conversations": [{"from": "human"}]}', "field 'conversations[0]' has no string content/value (got null)"),
    (
        b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "a"}]}',
        "field 'messages[0]' is not valid Unicode text (unpaired surrogate U+D800 at character 0)",
    ),
    (b'{"messages": [{"role": "user", "content": "q"}]}', "field 'messages' has no assistant turn to use as output"),
    (
        b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}',
        "field 'messages[1]' (the assistant answer) is empty",
    ),
    (
        b'{"conversations": [{"from": "gpt", "value": "a"}]}',
        "field 'conversations' has no turn before the assistant answer",
    ),
    (
        b'{"id": "g", "instruction": "again", "output": "b"}',
        "field 'id': duplicate id 'g' (first seen at row 0)",
    ),
    (b'{"instruction": "q", "output": "a",}', "not valid JSON (Expecting property name enclosed in double quotes"),
    (b'{"instruction": "q" "output": "a"}', "not valid JSON (Expecting ',' delimiter at column 21)"),
    (b"[" * 3000 + b"]" * 3000, "not valid JSON (nested too deeply to read)"),
    (b'{"instruction": "q", "output": "a", "n": ' + b"1" * 4400 + b"}", "not valid JSON (Exceeds the limit"),
    (
        b'{"instruction": "caf\xe9!", "output": "a"}',
        "field 'instruction' is not valid UTF-8 (invalid continuation byte at byte 20 of the line)",
    ),
    (
        b'{"instruction": "q", "output": "a", "meta": {"src": ["ok", "\xff"]}}',
        "field 'meta.src[1]' is not valid UTF-8 (invalid start byte at byte 60 of the line)",
    ),
    (b'"caf\xe9"', "row is not valid UTF-8 (invalid continuation byte at byte 4 of the line)"),
    (b'{"instruction": "q\x01", "output": "a"}', "not valid JSON (Invalid control character at column 19)"),
    (
        b'{"instruction": "a", "output": "o", "instruction": "b"}',
        "field 'instruction' is given more than once (the row's text is ambiguous)",
    ),
    (
        b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "role": "user"}]}',
        "field 'messages[1].role' is given more than once (the row's text is ambiguous)",
    ),
    (
        b'{"instruction": "q", "output": "a", "meta": {"tags": [{"k": 1, "k": 2}]}}',
        "field 'meta.tags[0].k' is given more than once (the row's text is ambiguous)",
    ),
    (b'{"instruction": "q\xff, "output": "a"}', "row is not valid UTF-8 (invalid start byte at byte 18 of the line)"),
]


@pytest.mark.parametrize(("line", "reason"), EVERY_JSONL_REASON, ids=[r for _, r in EVERY_JSONL_REASON])
def test_every_jsonl_reason_names_file_row_line_and_field(tmp_path, line, reason):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\n".join([GOOD, line, b'{"instruction": "q", "output": "a"}']) + b"\n")
    pool = read_pool(path)
    assert [r.position for r in pool.records] == [0, 2]
    (rejection,) = pool.rejected
    assert rejection.position == 1
    assert rejection.reason.startswith(f"pool.jsonl row 1 (line 2): {reason}"), rejection.reason


def test_jsonl_lines_count_blank_lines_but_positions_do_not(tmp_path):
    path = tmp_path / "pool.jsonl.gz"
    body = b"\n".join([b"", GOOD, b"   ", b"", b'{"instruction": "q", "output": 5}', b'{"output": "x"}'])
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + body + b"\n"))
    pool = read_pool(path)
    assert [r.reason for r in pool.rejected] == [
        "pool.jsonl.gz row 1 (line 5): field 'output' must be a string, got int",
        "pool.jsonl.gz row 2 (line 6): field 'instruction' is missing",
    ]


JSON_ARRAY = b"""[
  {"id": "g", "instruction": "q", "output": "a"},
  {"instruction": "q",
   "output": 5},

  {"instruction": "caf\xe9", "output": "a"}, [1],
  {"id": "g", "instruction": "q", "output": "b"},
  {"id": "h", "instruction": "q", "output": "a", "output": "b"}
]
"""


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_json_array_rows_know_their_lines(tmp_path, suffix):
    path = tmp_path / f"pool{suffix}"
    path.write_bytes(gzip.compress(JSON_ARRAY) if suffix.endswith(".gz") else JSON_ARRAY)
    pool = read_pool(path)
    assert pool.ids == ["g"]
    assert [(r.position, r.id, r.reason) for r in pool.rejected] == [
        (1, None, f"pool{suffix} row 1 (line 3): field 'output' must be a string, got int"),
        (2, None, f"pool{suffix} row 2 (line 6): field 'instruction' is not valid UTF-8 (byte 0xe9 at line 6)"),
        (3, None, f"pool{suffix} row 3 (line 6): row is a list, expected an object"),
        (4, "g", f"pool{suffix} row 4 (line 7): field 'id': duplicate id 'g' (first seen at row 0)"),
        (5, "h", f"pool{suffix} row 5 (line 8): field 'output' is given more than once (the row's text is ambiguous)"),
    ]


def test_json_object_with_data_array_rows_know_their_lines(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text(
        '{"meta": {"data": 1},\n "data": [\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q"}\n ]\n}',
        encoding="utf-8",
    )
    pool = read_pool(path)
    assert [r.reason for r in pool.rejected] == ["pool.json row 1 (line 4): field 'output' is missing"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[{"instruction": "q", "output": "a"} {"x": 1}]', "not valid JSON (Expecting ',' delimiter or ']' at line 1"),
        ('[{"instruction": "q", "output": "a"}] extra', "not valid JSON (Extra data at line 1 column 39)"),
        ('[{"instruction": "q", "output": "a"},\n{"x": }]', "not valid JSON (Expecting value at line 2 column 7)"),
        ('{"data": [{"instruction": "q", "output": "a"}], "data": 3}', "member 'data' is given more than once"),
        ('{"data": [{"instruction": "q", "output": "a"}], "data": []}', "member 'data' is given more than once"),
        ('{"data": 3}', "must be an array of rows"),
        ('[{"instruction": "q\x01", "output": "a"}]', "not valid JSON (Invalid control character at line 1 column 20)"),
        ("7", "must be an array of rows, not a int"),
    ],
)
def test_json_file_that_does_not_parse_names_the_place(tmp_path, text, words):
    path = tmp_path / "pool.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PoolError) as caught:
        read_pool(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_parquet_rows_give_their_position_and_field(tmp_path):
    good = [b"ok", b"caf\xe9", b"fine", b"also"]
    not_utf8 = pa.Array.from_buffers(pa.string(), 4, pa.array(good, pa.binary()).buffers())
    table = pa.table(
        {
            "id": ["a", "b", None, "a"],
            "instruction": not_utf8,
            "output": ["x", "y", None, "z"],
            "when": pa.array([0, 0, 0, 2**40], pa.timestamp("s")),
        }
    )
    pq.write_table(table, tmp_path / "pool.parquet")
    pool = read_pool(tmp_path / "pool.parquet")
    assert pool.ids == ["a"]
    assert pool.records[0].raw["when"] == dt.datetime(1970, 1, 1)
    assert [(r.position, r.id, r.reason) for r in pool.rejected] == [
        (1, "b", "pool.parquet row 1: field 'instruction' is not valid UTF-8 (unexpected end of data at byte 3)"),
        (2, None, "pool.parquet row 2: field 'output' is missing"),
        (3, "a", "pool.parquet row 3: field 'when' cannot be read (OverflowError: date value out of range)"),
    ]


CSV = (
    b"id,instruction,output\n"
    b'a,"multi\nline\ninstruction","answer, with comma"\n'
    b"b,q,\n"
    b"\n"
    b'c,"say ""hi""",a,extra\n'
    b"d,caf\xe9,a\n"
    b"a,q,dup\n"
    b"e,q\n"
    b" ,q,a\n"
    b',"q\nq",a\n'
)


NOT_UTF8 = "unexpected end of data"


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_rows_know_the_line_they_start_on(tmp_path, suffix):
    path = tmp_path / f"pool{suffix}"
    path.write_bytes(gzip.compress(CSV) if suffix.endswith(".gz") else CSV)
    pool = read_pool(path)
    assert [(r.position, r.id) for r in pool.records] == [(0, "a"), (7, "#7")]
    name = path.name
    assert [(r.position, r.id, r.reason) for r in pool.rejected] == [
        (1, "b", f"{name} row 1 (line 5): field 'output' is missing"),
        (2, None, f"{name} row 2 (line 7): has 4 cells but the header names 3 columns"),
        (3, "d", f"{name} row 3 (line 8): field 'instruction' is not valid UTF-8 ({NOT_UTF8} at byte 3 of the cell)"),
        (4, "a", f"{name} row 4 (line 9): field 'id': duplicate id 'a' (first seen at row 0)"),
        (5, None, f"{name} row 5 (line 10): has 2 cells but the header names 3 columns"),
        (6, " ", f"{name} row 6 (line 11): field 'id' is empty"),
    ]


def test_every_reason_has_the_prefix_and_names_a_field_or_says_why(tmp_path):
    lines = [GOOD] + [line for line, _ in EVERY_JSONL_REASON]
    path = tmp_path / "all.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    pool = read_pool(path)
    assert len(pool.rejected) == len(EVERY_JSONL_REASON)
    for rejection in pool.rejected:
        assert PREFIX.match(rejection.reason), rejection.reason
        assert rejection.reason.startswith(f"all.jsonl row {rejection.position} (line {rejection.position + 1}): ")
        what = PREFIX.sub("", rejection.reason)
        assert what.startswith(("field '", "row is ", "not valid JSON (")), what


def test_no_usable_row_error_quotes_the_first_reason_in_full(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_bytes(b"instruction,output\nq,\n")
    with pytest.raises(PoolError) as caught:
        read_pool(path)
    first = "pool.csv row 0 (line 2): field 'output' is missing"
    assert str(caught.value) == f"{path}: no usable row among 1; first problem: {first}"


def test_rejected_jsonl_from_a_run_keeps_its_schema(tmp_path):
    from daar.config import SelectConfig
    from daar.pipeline import run_select

    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\n".join([GOOD, b'{"id": 3, "instruction": "q", "output": 5}', b"{nope"]) + b"\n")
    run_select(SelectConfig(method="random", ratio=1.0, seed=0), path, tmp_path / "out", report=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert rows == [
        {"position": 1, "id": "3", "reason": "pool.jsonl row 1 (line 2): field 'output' must be a string, got int"},
        {
            "position": 2,
            "id": None,
            "reason": "pool.jsonl row 2 (line 3): not valid JSON "
            "(Expecting property name enclosed in double quotes at column 2)",
        },
    ]
