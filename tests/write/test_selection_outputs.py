"""The selection beside selected.jsonl: Parquet and `datasets` outputs with the pool's types, and the
dataset_info.json entry LLaMA-Factory reads (daar.write.formats, daar.write.trainers).

Selections here are made by `random`, which reads no model: the writers, not the method, are tested."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from daar.config import FieldMap, SelectConfig
from daar.pipeline import run_select
from daar.write.trainers import RowKinds


def _config(**extra) -> SelectConfig:
    return SelectConfig.model_validate({"method": "random", "ratio": 0.5, "seed": 3, **extra})


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _alpaca(n: int) -> list[dict]:
    return [{"id": f"r{i}", "instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(n)]


def test_parquet_output_keeps_the_pools_types(tmp_path):
    """A Parquet pool's timestamps and lists come back as such, not as their JSON text."""
    rows = _alpaca(20)
    for i, row in enumerate(rows):
        row["when"] = dt.datetime(2024, 1, 1 + i, 12, 30, tzinfo=dt.UTC)
        row["scores"] = [i, i + 1]
    rows[4]["output"] = None  # rejected, never written
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pool)
    result = run_select(_config(), pool, tmp_path / "run", report=False, output_format="parquet")
    table = pq.read_table(tmp_path / "run" / "selected.parquet")
    assert table.schema.equals(pq.read_schema(pool))
    assert table.column("id").to_pylist() == result.selected_ids == [r["id"] for r in _lines(result.selected_path)]
    chosen = {r["id"]: r for r in rows}
    assert table.to_pylist() == [chosen[i] for i in result.selected_ids]
    assert result.manifest["outputs"]["rows"] == {"selected.jsonl": 10, "selected.parquet": 10}
    assert result.manifest["counts"]["rejected"] == 1


def test_hf_output_is_a_dataset_with_the_input_features(tmp_path):
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "instruction": datasets.Value("string"),
            "output": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["easy", "hard"]),
        }
    )
    rows = [{"id": f"r{i}", "instruction": f"Q{i}", "output": f"A{i}", "label": i % 2} for i in range(30)]
    dataset = datasets.Dataset.from_list(rows, features=features)
    result = run_select(_config(), dataset, tmp_path / "run", report=False, output_format="hf")
    saved = datasets.load_from_disk(str(tmp_path / "run" / "selected"))
    assert saved.features == features
    assert saved["id"] == result.selected_ids and len(saved) == 15
    assert saved["label"] == [int(i[1:]) % 2 for i in result.selected_ids]
    assert result.manifest["outputs"]["rows"] == {"selected.jsonl": 15, "selected/": 15}
    assert result.manifest["input"]["dataset"] == "(a datasets.Dataset)"


def test_json_rows_get_one_schema_over_every_selected_row(tmp_path):
    """Keys some rows lack are null there; a column's type is the one all its values share."""
    rows = _alpaca(40)
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["meta"] = {"source": "s", "rank": i}
        row["weight"] = 1 if i % 2 else 0.5
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_select(_config(ratio=0.6), pool, tmp_path / "run", report=False, output_format="parquet")
    table = pq.read_table(tmp_path / "run" / "selected.parquet")
    assert table.schema.field("weight").type == pa.float64()
    assert table.schema.field("meta").type == pa.struct([("source", pa.string()), ("rank", pa.int64())])
    written = {r["id"]: r for r in table.to_pylist()}
    for row in _lines(result.selected_path):
        assert written[row["id"]]["meta"] == row.get("meta") and written[row["id"]]["weight"] == row["weight"]


def test_ids_of_two_kinds_stop_the_parquet_output_with_the_field_named(tmp_path):
    """The reader takes the integer 7 and the string "r1" as ids of one pool; no Parquet column holds
    both, so the run stops with a message naming the field, not a traceback."""
    from daar.errors import UserError

    rows = _alpaca(20)
    for i in range(0, 20, 2):
        rows[i]["id"] = i  # integers among strings
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    stop = r"selected\.jsonl: the selected rows cannot be written as one table \(field 'id'"
    with pytest.raises(UserError, match=stop):
        run_select(_config(ratio=1.0), pool, tmp_path / "run", report=False, output_format="parquet")
    assert len(_lines(tmp_path / "run" / "selected.jsonl")) == 20  # the selection itself is written
    assert not (tmp_path / "run" / ".selected.arrow.tmp").exists()


def _entry(out: Path) -> dict:
    info = json.loads((out / "dataset_info.json").read_text())
    assert list(info) == ["daar_selected"]
    return info["daar_selected"]


def _check_llamafactory_reads(out: Path, entry: dict) -> None:
    """What LLaMA-Factory's converters read (its data/README.md): the named file, every named column
    in every row, and for sharegpt turns with the named keys and roles."""
    rows = _lines(out / entry["file_name"])
    assert rows
    for row in rows:
        for column in entry["columns"].values():
            assert column in row
        if entry["formatting"] == "sharegpt":
            tags = entry["tags"]
            roles = {tags["user_tag"], tags["assistant_tag"], tags["system_tag"]}
            for turn in row[entry["columns"]["messages"]]:
                assert turn[tags["role_tag"]] in roles and isinstance(turn[tags["content_tag"]], str)


def test_dataset_info_for_alpaca_rows_names_the_columns_as_the_input_had_them(tmp_path):
    rows = [
        {"id": f"r{i}", "prompt": f"Q{i}", "context": f"c{i}", "response": f"A{i}", "system": "Be brief."}
        for i in range(20)
    ]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    fields = {"instruction": "prompt", "input": "context", "output": "response"}
    run_select(_config(fields=fields), pool, tmp_path / "run", report=False)
    entry = _entry(tmp_path / "run")
    assert entry == {
        "file_name": "selected.jsonl",
        "formatting": "alpaca",
        "columns": {"prompt": "prompt", "query": "context", "response": "response", "system": "system"},
    }
    _check_llamafactory_reads(tmp_path / "run", entry)
    # rows whose input is always empty: no query column (LLaMA-Factory then reads none)
    run_select(_config(), _write(tmp_path / "plain.jsonl", _alpaca(10)), tmp_path / "plain", report=False)
    assert _entry(tmp_path / "plain")["columns"] == {"prompt": "instruction", "response": "output"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_dataset_info_for_chat_and_sharegpt_rows(tmp_path):
    chat = [
        {
            "id": f"m{i}",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Q{i}"},
                {"role": "assistant", "content": f"A{i}"},
            ],
        }
        for i in range(12)
    ]
    run_select(_config(), _write(tmp_path / "chat.jsonl", chat), tmp_path / "chat", report=False)
    entry = _entry(tmp_path / "chat")
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages"}
    assert entry["tags"] == {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    }
    _check_llamafactory_reads(tmp_path / "chat", entry)

    sharegpt = [
        {"conversations": [{"from": "human", "value": f"Q{i}"}, {"from": "gpt", "value": f"A{i}"}]} for i in range(12)
    ]
    run_select(_config(), _write(tmp_path / "sg.jsonl", sharegpt), tmp_path / "sg", report=False)
    entry = _entry(tmp_path / "sg")
    assert entry["columns"] == {"messages": "conversations"}
    assert entry["tags"] == {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "system_tag": "system",
    }
    _check_llamafactory_reads(tmp_path / "sg", entry)


def test_a_selection_mixing_row_kinds_gets_no_entry_and_says_why(tmp_path):
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    rows = _alpaca(10) + [{"id": f"m{i}", "messages": turns} for i in range(10)]
    result = run_select(_config(ratio=1.0), _write(tmp_path / "mixed.jsonl", rows), tmp_path / "run", report=False)
    assert not (tmp_path / "run" / "dataset_info.json").exists()
    notes = result.manifest["outputs"]["llamafactory"]["notes"]
    assert notes == [
        "the selection mixes row kinds (10 alpaca, 10 messages); LLaMA-Factory reads one kind per dataset entry"
    ]


def test_roles_spelled_two_ways_are_noted():
    kinds = RowKinds(FieldMap())
    rows = [
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"conversations": [{"from": "user", "value": "Q"}, {"from": "bot", "value": "A"}]},
    ]
    assert list(kinds.rows(rows)) == rows
    entry, notes = kinds.entry("selected.jsonl")
    assert entry["tags"]["user_tag"] == "human" and entry["tags"]["assistant_tag"] == "gpt"
    assert notes == ["LLaMA-Factory skips rows with the roles ['bot', 'user'] (its tags name one spelling per role)"]


def test_block_by_block_selection_writes_the_same_outputs(tmp_path, monkeypatch):
    """A DatasetDict split goes block by block; its selection is written as Parquet too, in the
    shards' own schema, with dataset_info.json."""
    from daar.cli import app

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    rows = _alpaca(50)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dict"))
    out = tmp_path / "run"
    args = ["select", str(tmp_path / "dict"), "--split", "train", "--out", str(out), "--method", "output_length"]
    result = CliRunner().invoke(app, [*args, "--output-format", "parquet", "--ratio", "0.2"])
    assert result.exit_code == 0, result.output
    assert "selected.jsonl, selected.parquet, dataset_info.json" in " ".join(result.output.split())
    table = pq.read_table(out / "selected.parquet")
    assert table.column("id").to_pylist() == [r["id"] for r in _lines(out / "selected.jsonl")]
    assert len(table) == 10 and _entry(out)["formatting"] == "alpaca"
    bad = CliRunner().invoke(app, [*args, "--output-format", "csv"])
    assert bad.exit_code == 2 and "--output-format must be one of jsonl, parquet, hf" in bad.output


def test_an_empty_chat_cell_of_a_csv_row_is_no_chat(tmp_path):
    """CSV rows are written back with their cells as they were: an empty `messages` cell is "",
    and such rows are Alpaca rows, as the reader read them."""
    pool = tmp_path / "pool.csv"
    lines = ["id,instruction,input,output,messages"] + [f"r{i},Question {i}?,,Answer {i}.," for i in range(10)]
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_select(_config(), pool, tmp_path / "run", report=False)
    assert _entry(tmp_path / "run") == {
        "file_name": "selected.jsonl",
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "response": "output"},
    }
