"""Positional ids never collide with explicit ones (a row without id used to get str(position) and
be rejected as a duplicate of a row whose id was that number, or the reverse)."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from daar.config import FieldMap, SelectConfig
from daar.pipeline import run_select
from daar.read import read_pool, to_record

GOOD = {"instruction": "Name a prime.", "output": "7"}


def _ids(pool) -> list[tuple[int, str, bool]]:
    return [(r.position, r.id, r.explicit_id) for r in pool.records]


def test_row_without_id_does_not_collide_with_a_later_explicit_numeric_id(tmp_path):
    rows = [GOOD, GOOD, GOOD, {"id": "0", **GOOD}, {"id": 2, **GOOD}]
    pool = read_pool(write_jsonl(tmp_path / "pool.jsonl", rows))
    assert pool.rejected == []
    assert _ids(pool) == [(0, "#0", False), (1, "#1", False), (2, "#2", False), (3, "0", True), (4, "2", True)]


def test_explicit_numeric_id_first_does_not_collide_with_a_later_row_without_id(tmp_path):
    rows = [{"id": "3", **GOOD}, {"id": 1, **GOOD}, GOOD, GOOD]
    pool = read_pool(write_jsonl(tmp_path / "pool.jsonl", rows))
    assert pool.rejected == []
    assert _ids(pool) == [(0, "3", True), (1, "1", True), (2, "#2", False), (3, "#3", False)]


def test_explicit_ids_spelled_like_positional_ones_keep_their_spelling(tmp_path):
    """An explicit "#2" is kept as is; the row without id at position 2 moves to "##2" (then "###2")."""
    rows = [GOOD, {"id": "#2", **GOOD}, GOOD, {"id": "##2", **GOOD}, {"id": "#0", **GOOD}]
    pool = read_pool(write_jsonl(tmp_path / "pool.jsonl", rows))
    assert pool.rejected == []
    assert _ids(pool) == [(0, "##0", False), (1, "#2", True), (2, "###2", False), (3, "##2", True), (4, "#0", True)]
    assert len(set(pool.ids)) == len(pool.ids)


def test_rows_without_id_are_never_duplicates_but_explicit_ones_still_are(tmp_path):
    rows = [GOOD, GOOD, {"id": "#1", **GOOD}, {"id": "#1", "instruction": "again", "output": "x"}, GOOD]
    pool = read_pool(write_jsonl(tmp_path / "pool.jsonl", rows))
    assert _ids(pool) == [(0, "#0", False), (1, "##1", False), (2, "#1", True), (4, "#4", False)]
    assert [(r.position, r.id) for r in pool.rejected] == [(3, "#1")]
    assert "field 'id': duplicate id '#1' (first seen at row 2)" in pool.rejected[0].reason


def test_to_record_gives_the_positional_id_and_says_so():
    record = to_record(GOOD, 12, FieldMap())
    assert (record.id, record.explicit_id) == ("#12", False)
    record = to_record({"id": 12, **GOOD}, 0, FieldMap())
    assert (record.id, record.explicit_id) == ("12", True)


def test_csv_empty_id_cell_and_parquet_null_id_are_rows_without_id(tmp_path):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerows([["id", "instruction", "output"], ["1", "q", "a"], ["", "q", "a"], ["0", "q", "a"]])
    writer.writerow([" ", "q", "a"])
    (tmp_path / "pool.csv").write_text(buffer.getvalue(), encoding="utf-8")
    pool = read_pool(tmp_path / "pool.csv")
    assert _ids(pool) == [(0, "1", True), (1, "#1", False), (2, "0", True)]
    assert pool.records[1].raw == {"id": "", "instruction": "q", "output": "a"}  # written back as it was
    assert [(r.position, r.id) for r in pool.rejected] == [(3, " ")]
    assert "field 'id' is empty" in pool.rejected[0].reason

    table = pa.table({"id": ["1", None, "0"], "instruction": ["q"] * 3, "output": ["a"] * 3})
    pq.write_table(table, tmp_path / "pool.parquet")
    pool = read_pool(tmp_path / "pool.parquet")
    assert pool.rejected == []
    assert _ids(pool) == [(0, "1", True), (1, "#1", False), (2, "0", True)]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_pipeline_keeps_every_colliding_row_and_writes_distinct_ids(tmp_path, suffix):
    rows = [{"id": None, "instruction": f"q{i}", "output": "a"} for i in range(6)]
    rows += [{"id": str(i), "instruction": f"explicit {i}", "output": "a"} for i in range(6)]
    path = tmp_path / f"pool{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        write_jsonl(path, rows)
    run_select(SelectConfig(method="random", ratio=0.5, seed=0), path, tmp_path / "out", report=False)
    assert (tmp_path / "out" / "rejected.jsonl").read_text() == ""
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert sorted(scores["position"]) == list(range(12))
    assert scores["id"].is_unique
    assert dict(zip(scores["position"], scores["id"], strict=True))[3] == "#3"
    selected = [json.loads(line) for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    assert len(selected) == 6 and all(row in rows for row in selected)
