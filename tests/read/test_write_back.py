"""Rows are written back to selected.jsonl whatever valid types they hold.

Parquet timestamps, dates, times, durations, decimals and binary (alone or nested), NaN and
infinite floats and numpy scalars used to crash the JSONL writer after the run's compute; they are
now written in the lossless text forms documented in daar.utils.cache, and a value with no JSON
form at all is a rejection at read time, never a crash.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daar.config import SelectConfig
from daar.pipeline import run_select
from daar.read import read_pool
from daar.utils.cache import UnwritableValue, json_line, write_jsonl

NS_STAMP = 1_234_567_890_123_456_789  # 2009-02-13T23:31:30.123456789
NS_TIME = 3_723_000_000_001  # 01:02:03.000000001
BINARY = b"\xff\x00\x10 not utf-8"
TYPED_COLUMNS = {
    "ts_ns": (pa.array([NS_STAMP], pa.timestamp("ns")), "2009-02-13T23:31:30.123456789"),
    "ts_us_tz": (pa.array([1_234_567_890_123_456], pa.timestamp("us", tz="Europe/Paris")), None),
    "ts_s": (pa.array([0], pa.timestamp("s")), "1970-01-01T00:00:00"),
    "date32": (pa.array([dt.date(2024, 2, 29)], pa.date32()), "2024-02-29"),
    "date64": (pa.array([dt.date(1999, 12, 31)], pa.date64()), "1999-12-31"),
    "time_s": (pa.array([dt.time(23, 59, 58)], pa.time32("s")), "23:59:58"),
    "time_ns": (pa.array([NS_TIME], pa.time64("ns")), "01:02:03.000000001"),
    "duration_ns": (pa.array([NS_TIME], pa.duration("ns")), "P0DT1H2M3.000000001S"),
    "duration_neg_us": (pa.array([-3_723_000_001], pa.duration("us")), "-P0DT1H2M3.000001S"),
    "decimal": (pa.array([decimal.Decimal("1.2300")], pa.decimal128(10, 4)), "1.2300"),
    "decimal_big": (
        pa.array([decimal.Decimal("-123456789012345678901234567890.123456789")], pa.decimal256(50, 9)),
        "-123456789012345678901234567890.123456789",
    ),
    "bytes_utf8": (pa.array(["héllo".encode()], pa.binary()), "héllo"),
    "bytes_other": (pa.array([BINARY], pa.binary()), {"$base64": base64.b64encode(BINARY).decode()}),
    "fixed_bytes": (pa.array([b"\x00\x01"], pa.binary(2)), "\x00\x01"),
    "nan": (pa.array([float("nan")], pa.float64()), "NaN"),
    "inf": (pa.array([float("inf")], pa.float32()), "Infinity"),
    "minus_inf": (pa.array([float("-inf")], pa.float64()), "-Infinity"),
    "nested": (
        pa.array(
            [[{"when": NS_STAMP, "price": decimal.Decimal("9.99"), "blob": BINARY, "score": float("nan")}]],
            pa.list_(
                pa.struct(
                    [
                        ("when", pa.timestamp("ns")),
                        ("price", pa.decimal128(5, 2)),
                        ("blob", pa.binary()),
                        ("score", pa.float64()),
                    ]
                )
            ),
        ),
        [
            {
                "when": "2009-02-13T23:31:30.123456789",
                "price": "9.99",
                "blob": {"$base64": base64.b64encode(BINARY).decode()},
                "score": "NaN",
            }
        ],
    ),
    "map_of_dates": (
        pa.array([[("start", dt.date(2020, 1, 1))]], pa.map_(pa.string(), pa.date32())),
        [["start", "2020-01-01"]],
    ),
    "list_of_times": (pa.array([[NS_TIME, None]], pa.list_(pa.time64("ns"))), ["01:02:03.000000001", None]),
}


def test_every_parquet_type_is_written_back_in_its_text_form(tmp_path):
    rows = 4
    columns = {"instruction": pa.array([f"q{i}" for i in range(rows)]), "output": pa.array(["a"] * rows)}
    for name, (array, _) in TYPED_COLUMNS.items():
        columns[name] = pa.concat_arrays([array] * rows)
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table(columns), path)

    result = run_select(SelectConfig(method="random", ratio=1.0, seed=1), path, tmp_path / "out", report=False)

    assert result.manifest["counts"]["rejected"] == 0
    lines = (tmp_path / "out" / "selected.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == rows
    for line in lines:
        row = json.loads(line)  # strict JSON: no NaN literals
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard constant {name}"))
        assert list(row) == list(columns)  # every column, in file order
        for name, (_, expected) in TYPED_COLUMNS.items():
            if expected is not None:
                assert row[name] == expected, name
        aware = dt.datetime.fromisoformat(row["ts_us_tz"])
        assert row["ts_us_tz"] == "2009-02-14T00:31:30.123456+01:00"
        assert aware == dt.datetime(2009, 2, 13, 23, 31, 30, 123456, tzinfo=dt.UTC)
        assert base64.b64decode(row["bytes_other"]["$base64"]) == BINARY
    assert sorted(json.loads(line)["instruction"] for line in lines) == [f"q{i}" for i in range(rows)]


def test_json_line_text_forms_for_python_and_numpy_values():
    row = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        "day": dt.date(2024, 1, 2),
        "clock": dt.time(3, 4, 5),
        "span": dt.timedelta(days=2, seconds=5, microseconds=7),
        "pd_stamp": pd.Timestamp("2024-01-02T03:04:05.123456789"),
        "pd_span": pd.Timedelta(1, unit="ns"),
        "exact": decimal.Decimal("0.1000"),
        "huge": decimal.Decimal("1E+30"),
        "text_bytes": "ok ✓".encode(),
        "raw_bytes": bytearray(b"\x80\x81"),
        "floats": [float("nan"), float("inf"), -float("inf"), 0.5],
        "np": [np.int64(3), np.float32(0.5), np.bool_(True), np.float64("nan"), np.str_("s")],
        "np_array": np.array([[1, 2], [3, 4]], dtype=np.int16),
        "np_dates": np.array(["2024-01-02T03:04:05.000000001"], dtype="datetime64[ns]"),
        "np_date": np.datetime64("2024-01-02"),
        "np_span": np.timedelta64(90, "s"),
        "uuid": uuid.UUID(int=1),
        "tuple": (1, "x"),
        7: "an int key stays valid JSON",
        dt.date(2024, 1, 2): "a date key becomes its text",
    }
    written = json.loads(json_line(row))
    assert written == {
        "when": "2024-01-02T03:04:05.000006",
        "day": "2024-01-02",
        "clock": "03:04:05",
        "span": "P2DT0H0M5.000007S",
        "pd_stamp": "2024-01-02T03:04:05.123456789",
        "pd_span": "P0DT0H0M0.000000001S",
        "exact": "0.1000",
        "huge": "1E+30",
        "text_bytes": "ok ✓",
        "raw_bytes": {"$base64": "gIE="},
        "floats": ["NaN", "Infinity", "-Infinity", 0.5],
        "np": [3, 0.5, True, "NaN", "s"],
        "np_array": [[1, 2], [3, 4]],
        "np_dates": ["2024-01-02T03:04:05.000000001"],
        "np_date": "2024-01-02",
        "np_span": "P0DT0H1M30S",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "tuple": [1, "x"],
        "7": "an int key stays valid JSON",
        "2024-01-02": "a date key becomes its text",
    }


def test_plain_rows_take_the_fast_path_unchanged():
    row = {"instruction": "café ✓", "n": 3, "f": 0.25, "nested": {"a": [1, None, True]}}
    assert json_line(row) == json.dumps(row, ensure_ascii=False).encode("utf-8")


def test_unpaired_surrogate_is_written_as_an_escape_that_reads_back_the_same():
    row = {"instruction": "q", "note": "half a pair: \ud800 and text"}
    line = json_line(row)
    assert b"\\ud800" in line and line.isascii()
    assert json.loads(line) == row


def test_a_value_with_no_json_form_names_its_field():
    with pytest.raises(UnwritableValue) as caught:
        json_line({"instruction": "q", "meta": {"tags": ["a", {1, 2}]}})
    assert caught.value.field == "meta.tags[1]"
    assert str(caught.value) == "field 'meta.tags[1]' holds a set value, which has no JSON form"
    assert isinstance(caught.value, TypeError)


def test_write_jsonl_writes_the_forms_and_counts_rows(tmp_path):
    target = tmp_path / "rows.jsonl"
    count = write_jsonl(target, [{"t": dt.date(2020, 1, 1)}, {"x": float("nan")}, {"s": "\udcff"}])
    assert count == 3
    assert [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()] == [
        {"t": "2020-01-01"},
        {"x": "NaN"},
        {"s": "\udcff"},
    ]


class _Opaque:
    """A Python object with no JSON form, as an Arrow extension type may give."""

    def __init__(self, value):
        self.value = value


class _OpaqueScalar(pa.ExtensionScalar):
    def as_py(self, **_):
        return None if self.value is None else _Opaque(self.value.as_py())


class _OpaqueType(pa.ExtensionType):
    def __init__(self):
        super().__init__(pa.int64(), "daar.test.opaque")

    def __arrow_ext_serialize__(self):
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()

    def __arrow_ext_scalar_class__(self):
        return _OpaqueScalar


def test_a_value_with_no_json_form_is_rejected_at_read_time_not_a_crash(tmp_path):
    pa.register_extension_type(_OpaqueType())
    try:
        column = pa.ExtensionArray.from_storage(_OpaqueType(), pa.array([None, 5, None]))
        table = pa.table({"id": ["a", "b", "c"], "instruction": ["q"] * 3, "output": ["x"] * 3, "opaque": column})
        path = tmp_path / "opaque.parquet"
        pq.write_table(table, path)
        pool = read_pool(path)
        assert pool.ids == ["a", "c"]
        assert [(r.position, r.id, r.reason) for r in pool.rejected] == [
            (1, "b", "opaque.parquet row 1: field 'opaque' holds a _Opaque value, which has no JSON form")
        ]
        run_select(SelectConfig(method="random", ratio=1.0, seed=0), path, tmp_path / "out", report=False)
        assert len((tmp_path / "out" / "selected.jsonl").read_text().splitlines()) == 2
    finally:
        pa.unregister_extension_type("daar.test.opaque")


def test_jsonl_values_json_cannot_write_back(tmp_path):
    """NaN literals (which Python's json reads) and unpaired surrogates in extra fields are good rows;
    a surrogate in a text field, a too-deep row and a 5000-digit integer are rejected with reasons."""
    lines = [
        b'{"id": "nan", "instruction": "q", "output": "a", "score": NaN, "top": Infinity}',
        b'{"id": "sur", "instruction": "q", "output": "a", "note": "\\ud800"}',
        b'{"id": "bad-sur", "instruction": "q \\udfff", "output": "a"}',
        b'{"id": "deep", "instruction": "q", "output": "a", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"id": "bigint", "instruction": "q", "output": "a", "n": ' + b"9" * 5000 + b"}",
    ]
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run_select(SelectConfig(method="random", ratio=1.0, seed=0), path, tmp_path / "out", report=False)
    assert result.manifest["counts"]["selected"] == 2
    selected = [json.loads(line) for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    by_id = {row["id"]: row for row in selected}
    assert by_id["nan"]["score"] == "NaN" and by_id["nan"]["top"] == "Infinity"
    assert by_id["sur"]["note"] == "\ud800"
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["position"] for r in rejected] == [2, 3, 4]
    assert "field 'instruction' is not valid Unicode text (unpaired surrogate U+DFFF" in rejected[0]["reason"]
    assert "not valid JSON (nested too deeply to read)" in rejected[1]["reason"]
    assert "not valid JSON (Exceeds the limit (4300 digits)" in rejected[2]["reason"]
