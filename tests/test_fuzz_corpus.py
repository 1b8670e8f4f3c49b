"""A seeded corpus of bad rows mixed into good ones, in every input format, through a whole run.

For each format a file of about 1,400 rows is generated (1,050 bad rows of the kinds that format
can hold, 350 good Alpaca, chat `messages` and ShareGPT `conversations` rows), and
`run_select(SelectConfig(method="random", ratio=0.2, seed=1), path, out)` runs on it. Only the
files the run writes are read back, and they must show that:

- the run finished (no exception);
- every bad row is in rejected.jsonl exactly once, with a reason naming the file, its row
  position, its line (text formats) and the field or why ("field 'output' is missing", a key
  given twice in one object, ...);
- no good row is rejected;
- lines(selected.jsonl) + rows with selected == False in scores.parquet + lines(rejected.jsonl)
  == the rows written;
- the positions selected (matched back to the input by their full content), not selected and
  rejected are disjoint and together all positions.

What each format cannot express, and so does not hold:

- .json/.json.gz: a row that is not valid JSON, nested too deeply or holding an integer of more
  than 4300 digits makes the whole array unreadable (a file-level error, tested in tests/read),
  so those three kinds are .jsonl-only;
- .parquet: columns have one type for every row, so "not an object", invalid JSON, a wrong type of
  instruction/output or id (the id column is text) cannot be written; a wrong type is written as
  a list in the `input` column (null in good rows), and invalid UTF-8 with Arrow's raw buffers;
- .csv/.csv.gz: every cell is text and there is no nesting, so wrong types, JSON errors and chat
  rows cannot be written; empty cells (missing fields), wrong cell counts, text in a `messages`
  column and bytes that are not UTF-8 can.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daar.config import SelectConfig
from daar.pipeline import run_select

N_GOOD = 350
N_BAD = 1050
FORMATS = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")
WORDS = ["alpha", "beta", "gamma", "café", "naïve", "漢字", "✓", "comma, here", 'say "hi"', "tab\there", "x" * 30]
INVALID_UTF8 = [b"\xff", b"\xe9", b"\xc3(", b"\xed\xa0\x80", b"\x80abc", b"\xf0\x9f\x98"]


@dataclass
class Row:
    """One input row: `payload` is what the format writer gets; a good row has `expected` (the row
    selected.jsonl must hold), a bad one its `kind` and the words its reason must contain."""

    payload: Any
    expected: Any = None
    kind: str = "good"
    words: tuple[str, ...] = ()
    line: int | None = None

    @property
    def good(self) -> bool:
        return self.kind == "good"


@dataclass
class Ids:
    """Explicit ids handed out so far; many are spelled like positional ids on purpose."""

    rng: random.Random
    total: int
    taken: dict[str, Any] = field(default_factory=dict)
    serial: int = 0

    def explicit(self, text_only: bool = False) -> Any:
        while True:
            self.serial += 1
            k = self.rng.randrange(self.total)
            value = self.rng.choice(
                [k, str(k), f"#{k}", f"##{k}", f"g-{self.serial}", f"  padded-{self.serial} ", f"ü-{self.serial}"]
            )
            if text_only:
                value = str(value)
            if str(value).strip() not in self.taken:
                self.taken[str(value).strip()] = value
                return value

    def earlier(self) -> Any:
        """An id a good row already has, in another spelling where one exists (7 -> "7", "x" -> " x ")."""
        value = self.rng.choice(list(self.taken.values()))
        if isinstance(value, int):
            return self.rng.choice([value, str(value)])
        return self.rng.choice([value, f" {value.strip()} "])


def _text(rng: random.Random, tag: str) -> str:
    return f"{tag}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))


def _turns(rng: random.Random, key: str, tag: str) -> list[dict[str, Any]]:
    role, content = ("role", "content") if key == "messages" else ("from", "value")
    user, assistant = ("user", "assistant") if key == "messages" else ("human", "gpt")
    turns = []
    if rng.random() < 0.3:
        turns.append({role: "system", content: "be brief"})
    for i in range(rng.randrange(1, 3)):
        turns.append({role: user, content: _text(rng, f"{tag} q{i}")})
        turns.append({role: assistant, content: _text(rng, f"{tag} a{i}")})
    return turns


# --- JSON rows (.jsonl, .json) -------------------------------------------------------------------


@dataclass
class Raw:
    """Bytes written as they are: a line of a .jsonl file, or an element of a .json array."""

    data: bytes


def _good_json(rng: random.Random, ids: Ids, tag: str, shape: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    choice = rng.random()
    if choice < 0.5:
        row["id"] = ids.explicit()
    elif choice < 0.7:
        row["id"] = None
    if shape in ("messages", "conversations"):
        row[shape] = _turns(rng, shape, tag)
    else:
        row["instruction"] = {"nul": "\x00", "huge": _text(rng, tag)}.get(shape, _text(rng, tag))
        if rng.random() < 0.4:
            row["input"] = rng.choice(["", None, _text(rng, "input")])
        row["output"] = _text(rng, f"{tag} answer") + ("y" * 150_000 if shape == "huge" else "")
    if shape == "nul":
        row["output"] = f"\x00 {tag}"
    if shape == "surrogate":
        row["note"] = "half a pair \ud83d kept as written"
    if rng.random() < 0.3:
        row["meta"] = {"source": rng.choice(["a", "b"]), "n": rng.randrange(100), "f": 0.5, "ok": True, "x": None}
    return row


def _invalid_utf8(rng: random.Random, row: dict[str, Any], path: list[Any]) -> Raw:
    """The row's JSON with the string at `path` holding bytes that are not UTF-8."""
    target = row
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = f"bad @@BYTES@@ {rng.random()}"
    data = json.dumps(row, ensure_ascii=False).encode("utf-8")
    return Raw(data.replace(b"@@BYTES@@", rng.choice(INVALID_UTF8)))


def _dotted(path: list[Any]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _bad_json(rng: random.Random, ids: Ids, kind: str, tag: str) -> tuple[Any, tuple[str, ...]]:
    base = {"instruction": _text(rng, tag), "output": _text(rng, "answer")}
    key = rng.choice(["messages", "conversations"])
    role, content = ("role", "content") if key == "messages" else ("from", "value")
    user, assistant = ("user", "assistant") if key == "messages" else ("human", "gpt")
    if kind == "not_object":
        value = rng.choice([[1, 2], 3, 2.5, "just text", None, True, [], [base]])
        return value, ("row is null" if value is None else "row is a", "expected an object")
    if kind in ("missing_instruction", "missing_output"):
        name = kind.split("_")[1]
        if rng.random() < 0.5:
            del base[name]
        else:
            base[name] = None
        return base, (f"field '{name}' is missing",)
    if kind in ("empty_instruction", "empty_output"):
        name = kind.split("_")[1]
        base[name] = rng.choice(["", " ", "\n\t  "])
        return base, (f"field '{name}' is empty",)
    if kind == "wrong_type":
        name = rng.choice(["instruction", "input", "output"])
        base[name] = rng.choice([5, 2.5, ["a"], {"k": "v"}, True, False, []])
        return base, (f"field '{name}' must be a string, got {type(base[name]).__name__}",)
    if kind == "invalid_json":
        line = rng.choice(
            [
                b'{"instruction": "q", "output": "a",}',
                b'{"instruction": "q" "output": "a"}',
                b"{'instruction': 'q', 'output': 'a'}",
                b'{"instruction": "q", "output": "a"}}',
                b'{"instruction": "q", "outp',
                b"hello world",
                b"{instruction: 1}",
                b"]",
                b'{"a": tru}',
            ]
        )
        return Raw(line), ("not valid JSON (",)
    if kind == "too_deep":
        depth = rng.randrange(3000, 6000)
        return Raw(b'{"instruction": "q", "output": "a", "x": ' + b"[" * depth + b"]" * depth + b"}"), (
            "not valid JSON (nested too deeply",
        )
    if kind == "huge_int":
        digits = str(rng.randrange(1, 10)).encode() * rng.randrange(4400, 6000)
        return Raw(b'{"instruction": "q", "output": "a", "n": ' + digits + b"}"), ("4300 digits",)
    if kind == "invalid_utf8":
        row: dict[str, Any] = dict(base)
        where = rng.choice(["instruction", "output", "input", "id", "meta", "messages"])
        if where == "meta":
            row["meta"] = {"tags": ["ok", "x"]}
            path: list[Any] = ["meta", "tags", 1]
        elif where == "messages":
            row = {key: _turns(rng, key, tag)}
            path = [key, 1, content]
        else:
            path = [where]
        return _invalid_utf8(rng, row, path), (f"field '{_dotted(path)}' is not valid UTF-8",)
    if kind == "duplicate_id":
        base["id"] = ids.earlier()
        return base, ("field 'id': duplicate id",)
    if kind == "repeated_key":  # json.loads would keep the last value without a word
        if rng.random() < 0.5:
            name = rng.choice(["instruction", "output"])
            data = json.dumps(base)[:-1] + f', "{name}": {json.dumps(_text(rng, "again"))}}}'
            return Raw(data.encode()), (f"field '{name}' is given more than once", "ambiguous")
        turns = json.dumps(_turns(rng, key, tag)).replace(f'"{content}": ', f'"{content}": "first", "{content}": ', 1)
        data = json.dumps({key: "@@"}).replace('"@@"', turns).encode()
        return Raw(data), (f"field '{key}[0].{content}' is given more than once", "ambiguous")
    if kind == "bad_id_type":
        base["id"] = rng.choice([1.5, [1], True, False, {"a": 1}, 0.0])
        return base, (f"field 'id' must be a string or integer, got {type(base['id']).__name__}",)
    if kind == "empty_id":
        base["id"] = rng.choice(["", " ", "\t"])
        return base, ("field 'id' is empty",)
    if kind == "surrogate_text":
        name = rng.choice(["instruction", "output"])
        base[name] = "lone " + rng.choice(["\ud800", "\udfff", "\udc80"]) + " half"
        return base, (f"field '{name}' is not valid Unicode text",)
    if kind == "chat_not_list":
        return {key: rng.choice(["hello", {"role": "user"}, 5, [], True])}, (
            f"field '{key}' must be a non-empty list of turns",
        )
    turns = _turns(rng, key, tag)
    if kind == "chat_turn_not_object":
        turns[0] = rng.choice(["hi", 3, None, ["a"]])
        return {key: turns}, (f"field '{key}[0]' must be an object",)
    if kind == "chat_turn_no_role":
        turns[0] = rng.choice([{content: "hi"}, {role: "", content: "hi"}, {role: 5, content: "hi"}])
        return {key: turns}, (f"field '{key}[0]' has no role/from",)
    if kind == "chat_content_not_string":
        turns[-1][content] = rng.choice([7, ["a"], None, {"t": "x"}])
        return {key: turns}, (f"field '{key}[{len(turns) - 1}]' has no string content/value",)
    if kind == "chat_no_assistant":
        return {key: [t for t in turns if t[role] != assistant]}, (f"field '{key}' has no assistant turn",)
    if kind == "chat_empty_answer":
        turns[-1][content] = rng.choice(["", "  ", "\n"])
        return {key: turns}, (f"field '{key}[{len(turns) - 1}]' (the assistant answer) is empty",)
    if kind == "chat_answer_only":
        first = rng.choice([[], [{role: user, content: " "}]])
        return {key: [*first, {role: assistant, content: "a"}]}, (
            f"field '{key}' has no turn before the assistant answer",
        )
    raise AssertionError(kind)


JSON_KINDS = [
    "not_object",
    "missing_instruction",
    "missing_output",
    "empty_instruction",
    "empty_output",
    "wrong_type",
    "invalid_utf8",
    "duplicate_id",
    "repeated_key",
    "bad_id_type",
    "empty_id",
    "surrogate_text",
    "chat_not_list",
    "chat_turn_not_object",
    "chat_turn_no_role",
    "chat_content_not_string",
    "chat_no_assistant",
    "chat_empty_answer",
    "chat_answer_only",
]
JSONL_ONLY_KINDS = ["invalid_json", "too_deep", "huge_int"]
GOOD_SHAPES = ["alpaca"] * 5 + ["messages"] * 2 + ["conversations"] * 2 + ["nul", "surrogate"]


def _plan(rng: random.Random, kinds: list[str]) -> list[str]:
    """Which kind each position holds: the first rows good (ids to duplicate), every kind used."""
    bad = [kinds[i % len(kinds)] for i in range(N_BAD)]
    rest = bad + ["good"] * (N_GOOD - 5)
    rng.shuffle(rest)
    plan = ["good"] * 5 + rest
    goods = [i for i, k in enumerate(plan) if k == "good"]
    for i in rng.sample(goods, 2):
        plan[i] = "good-huge"
    return plan


def _json_corpus(rng: random.Random, lines: bool) -> list[Row]:
    kinds = JSON_KINDS + (JSONL_ONLY_KINDS if lines else [])
    plan = _plan(rng, kinds)
    ids = Ids(rng, len(plan))
    rows = []
    for position, kind in enumerate(plan):
        tag = f"row {position}"
        if kind.startswith("good"):
            shape = "huge" if kind == "good-huge" else rng.choice(GOOD_SHAPES)
            value = _good_json(rng, ids, tag, shape)
            rows.append(Row(value, expected=value))
        else:
            value, words = _bad_json(rng, ids, kind, tag)
            rows.append(Row(value, kind=kind, words=words))
    return rows


def _json_bytes(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.data
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate: written as its \\u escape
        return json.dumps(value).encode("ascii")


def _write_jsonl(path: Path, rows: list[Row], rng: random.Random) -> bytes:
    out = bytearray(b"\xef\xbb\xbf")
    for row in rows:
        while rng.random() < 0.05:  # blank lines are not rows, but they are lines
            out += rng.choice([b"\n", b"   \n", b"\r\n"])
        row.line = out.count(b"\n") + 1
        out += _json_bytes(row.payload) + b"\n"
    return bytes(out)


def _write_json(path: Path, rows: list[Row], rng: random.Random) -> bytes:
    out = bytearray(b'{"name": "fuzz", "data": [\n')
    for i, row in enumerate(rows):
        row.line = out.count(b"\n") + 1
        out += _json_bytes(row.payload) + (b",\n" if i < len(rows) - 1 else b"\n")
    return bytes(out + b'], "count": %d}\n' % len(rows))


# --- Parquet -------------------------------------------------------------------------------------

PARQUET_KINDS = [
    "missing_instruction",
    "missing_output",
    "empty_instruction",
    "empty_output",
    "input_list",
    "invalid_utf8",
    "duplicate_id",
    "empty_id",
    "chat_empty_list",
    "chat_no_assistant",
    "chat_turn_no_role",
    "chat_content_null",
    "chat_turn_null",
    "chat_empty_answer",
    "chat_answer_only",
]
PARQUET_COLUMNS = ["id", "instruction", "input", "output", "messages", "conversations", "day"]


def _parquet_corpus(rng: random.Random) -> list[Row]:
    plan = _plan(rng, PARQUET_KINDS)
    ids = Ids(rng, len(plan))
    rows = []
    for position, kind in enumerate(plan):
        tag = f"row {position}"
        row: dict[str, Any] = dict.fromkeys(PARQUET_COLUMNS)
        key = rng.choice(["messages", "conversations"])
        role, content = ("role", "content") if key == "messages" else ("from", "value")
        assistant = "assistant" if key == "messages" else "gpt"
        if kind.startswith("good"):
            row["id"] = ids.explicit(text_only=True) if rng.random() < 0.6 else None
            shape = "huge" if kind == "good-huge" else rng.choice(["alpaca", "alpaca", "chat", "nul"])
            if shape == "chat":
                row[key] = _turns(rng, key, tag)
            else:
                row["instruction"] = "\x00" if shape == "nul" else _text(rng, tag)
                row["output"] = _text(rng, f"{tag} answer") + ("z" * 150_000 if shape == "huge" else "")
            day = date(2000, 1, 1) + timedelta(days=rng.randrange(10_000)) if rng.random() < 0.5 else None
            expected = {**row, "day": None if day is None else day.isoformat()}
            row["day"] = day
            rows.append(Row(row, expected=expected))
            continue
        words: tuple[str, ...]
        row["instruction"], row["output"] = _text(rng, tag), _text(rng, "answer")
        turns = _turns(rng, key, tag)
        chat = kind.startswith("chat")
        if chat:
            row["instruction"] = row["output"] = None
        if kind in ("missing_instruction", "missing_output"):
            row[kind.split("_")[1]] = None
            words = (f"field '{kind.split('_')[1]}' is missing",)
        elif kind in ("empty_instruction", "empty_output"):
            row[kind.split("_")[1]] = rng.choice(["", "  ", "\n"])
            words = (f"field '{kind.split('_')[1]}' is empty",)
        elif kind == "input_list":
            row["input"] = rng.choice([[], ["a"], ["a", "b"]])
            words = ("field 'input' must be a string, got list",)
        elif kind == "invalid_utf8":
            row["instruction"] = b"bad " + rng.choice(INVALID_UTF8) + tag.encode()
            words = ("field 'instruction' is not valid UTF-8",)
        elif kind == "duplicate_id":
            row["id"] = str(ids.earlier())
            words = ("field 'id': duplicate id",)
        elif kind == "empty_id":
            row["id"] = rng.choice(["", "  "])
            words = ("field 'id' is empty",)
        elif kind == "chat_empty_list":
            row[key] = []
            words = (f"field '{key}' must be a non-empty list of turns, got an empty list",)
        elif kind == "chat_no_assistant":
            row[key] = [t for t in turns if t[role] != assistant]
            words = (f"field '{key}' has no assistant turn",)
        elif kind == "chat_turn_no_role":
            turns[0][role] = None
            row[key] = turns
            words = (f"field '{key}[0]' has no role/from",)
        elif kind == "chat_content_null":
            turns[-1][content] = None
            row[key] = turns
            words = (f"field '{key}[{len(turns) - 1}]' has no string content/value (got null)",)
        elif kind == "chat_turn_null":
            turns[0] = None
            row[key] = turns
            words = (f"field '{key}[0]' must be an object, got null",)
        elif kind == "chat_empty_answer":
            turns[-1][content] = " "
            row[key] = turns
            words = (f"field '{key}[{len(turns) - 1}]' (the assistant answer) is empty",)
        else:
            assert kind == "chat_answer_only"
            row[key] = [{role: assistant, content: "a"}]
            words = (f"field '{key}' has no turn before the assistant answer",)
        rows.append(Row(row, kind=kind, words=words))
    return rows


def _write_parquet(path: Path, rows: list[Row], rng: random.Random) -> None:
    values = {name: [row.payload[name] for row in rows] for name in PARQUET_COLUMNS}
    instructions = [v if v is None or isinstance(v, bytes) else v.encode("utf-8") for v in values["instruction"]]
    as_binary = pa.array(instructions, pa.binary())
    # Arrow checks UTF-8 when it builds a string column from Python; raw buffers skip the check, as
    # a file written by another tool may.
    instruction = pa.Array.from_buffers(pa.string(), len(as_binary), as_binary.buffers(), as_binary.null_count)
    turn = {"messages": ("role", "content"), "conversations": ("from", "value")}
    table = pa.table(
        {
            "id": pa.array(values["id"], pa.string()),
            "instruction": instruction,
            "input": pa.array(values["input"], pa.list_(pa.string())),
            "output": pa.array(values["output"], pa.string()),
            **{
                key: pa.array(values[key], pa.list_(pa.struct([(name, pa.string()) for name in turn[key]])))
                for key in turn
            },
            "day": pa.array(values["day"], pa.date32()),
        }
    )
    pq.write_table(table, path, row_group_size=500)


# --- CSV -----------------------------------------------------------------------------------------

CSV_HEADER = ["id", "instruction", "input", "output", "messages"]
CSV_KINDS = [
    "empty_instruction_cell",
    "empty_output_cell",
    "blank_instruction",
    "blank_output",
    "invalid_utf8",
    "duplicate_id",
    "blank_id",
    "too_many_cells",
    "too_few_cells",
    "messages_text",
]


def _csv_corpus(rng: random.Random) -> list[Row]:
    plan = _plan(rng, CSV_KINDS)
    ids = Ids(rng, len(plan))
    rows = []
    for position, kind in enumerate(plan):
        tag = f"row {position}"
        cells = {name: "" for name in CSV_HEADER}
        cells["instruction"], cells["output"] = _text(rng, tag), _text(rng, "answer")
        if kind.startswith("good"):
            cells["id"] = ids.explicit(text_only=True) if rng.random() < 0.6 else ""
            if rng.random() < 0.3:
                cells["instruction"] += "\nsecond line, with a comma\nand a third"
            if rng.random() < 0.3:
                cells["input"] = _text(rng, "input")
            if rng.random() < 0.05:
                cells["instruction"] = "\x00"
            if kind == "good-huge":
                cells["output"] += "w" * 150_000
            cells["output"] += f" ({tag})"
            rows.append(Row(list(cells.values()), expected=dict(cells)))
            continue
        if kind in ("empty_instruction_cell", "empty_output_cell"):
            name = kind.split("_")[1]
            cells[name] = ""
            words: tuple[str, ...] = (f"field '{name}' is missing",)
        elif kind in ("blank_instruction", "blank_output"):
            name = kind.split("_")[1]
            cells[name] = rng.choice([" ", "   ", "\n"])
            words = (f"field '{name}' is empty",)
        elif kind == "invalid_utf8":
            name = rng.choice(CSV_HEADER)
            cells[name] = "bad " + rng.choice(INVALID_UTF8).decode("utf-8", errors="surrogateescape")
            words = (f"field '{name}' is not valid UTF-8",)
        elif kind == "duplicate_id":
            cells["id"] = str(ids.earlier())
            words = ("field 'id': duplicate id",)
        elif kind == "blank_id":
            cells["id"] = rng.choice([" ", "  ", "\t"])
            words = ("field 'id' is empty",)
        elif kind == "messages_text":
            cells["messages"] = rng.choice(["hello", "[]", '[{"role": "user"}]'])
            words = ("field 'messages' must be a non-empty list of turns, got str",)
        elif kind == "too_many_cells":
            extra = rng.randrange(1, 4)
            rows.append(
                Row(
                    list(cells.values()) + ["extra"] * extra,
                    kind=kind,
                    words=(f"has {5 + extra} cells but the header names 5 columns",),
                )
            )
            continue
        else:
            assert kind == "too_few_cells"
            keep = rng.randrange(1, 5)
            plural = "cell" if keep == 1 else "cells"
            short = list(cells.values())[1 : 1 + keep]  # from the instruction on: never one empty cell
            rows.append(Row(short, kind=kind, words=(f"has {keep} {plural} but the header names 5 columns",)))
            continue
        rows.append(Row(list(cells.values()), kind=kind, words=words))
    return rows


def _write_csv(path: Path, rows: list[Row], rng: random.Random) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for row in rows:
        while rng.random() < 0.03:  # blank lines are not rows
            buffer.write("\r\n")
        row.line = buffer.getvalue().count("\n") + 1
        if row.payload == [""]:  # pragma: no cover - a lone empty cell would read as a blank line
            raise AssertionError("ambiguous row")
        writer.writerow(row.payload)
    return buffer.getvalue().encode("utf-8", errors="surrogateescape")


# --- the test ------------------------------------------------------------------------------------


def _corpus(suffix: str, folder: Path) -> tuple[Path, list[Row]]:
    rng = random.Random(f"daar-fuzz-{suffix}")
    path = folder / f"fuzz{suffix}"
    if suffix == ".parquet":
        rows = _parquet_corpus(rng)
        _write_parquet(path, rows, rng)
        return path, rows
    if suffix.startswith(".csv"):
        rows = _csv_corpus(rng)
        data = _write_csv(path, rows, rng)
    elif suffix.startswith(".jsonl"):
        rows = _json_corpus(rng, lines=True)
        data = _write_jsonl(path, rows, rng)
    else:
        rows = _json_corpus(rng, lines=False)
        data = _write_json(path, rows, rng)
    path.write_bytes(gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data)
    return path, rows


def _key(row: Any) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=True)


@pytest.mark.parametrize("suffix", FORMATS)
def test_fuzz_corpus_every_row_accounted_for(tmp_path, suffix):
    path, rows = _corpus(suffix, tmp_path)
    bad = {i for i, row in enumerate(rows) if not row.good}
    assert len(bad) >= 1000 and len(rows) - len(bad) >= 300
    out = tmp_path / "out"

    run_select(SelectConfig(method="random", ratio=0.2, seed=1), path, out)

    selected_lines = (out / "selected.jsonl").read_bytes().split(b"\n")
    assert selected_lines.pop() == b""
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_bytes().split(b"\n")[:-1]]
    scores = pd.read_parquet(out / "scores.parquet")

    # every bad row rejected exactly once, for its own reason; no good row rejected
    counts = Counter(r["position"] for r in rejected)
    assert [p for p, n in counts.items() if n > 1] == []
    assert set(counts) == bad, (
        f"good rows rejected: {sorted(set(counts) - bad)[:5]}, missed: {sorted(bad - set(counts))[:5]}"
    )
    for entry in rejected:
        row = rows[entry["position"]]
        where = f"{path.name} row {entry['position']}" + (f" (line {row.line})" if row.line is not None else "")
        assert entry["reason"].startswith(f"{where}: "), (row.kind, entry["reason"])
        for word in row.words:
            assert word in entry["reason"], (row.kind, word, entry["reason"])
        assert set(entry) == {"position", "id", "reason"}

    # selected rows are good rows, unchanged, matched back to their positions by content
    good_by_content = {_key(row.expected): i for i, row in enumerate(rows) if row.good}
    assert len(good_by_content) == len(rows) - len(bad)
    selected = [good_by_content[_key(json.loads(line))] for line in selected_lines]
    assert len(set(selected)) == len(selected) > 0

    not_selected = scores.loc[~scores["selected"], "position"].tolist()
    assert sorted(scores.loc[scores["selected"], "position"]) == sorted(selected)
    assert scores["id"].is_unique

    assert len(selected_lines) + len(not_selected) + len(rejected) == len(rows)
    parts = [set(selected), set(not_selected), set(counts)]
    assert sum(len(p) for p in parts) == len(rows)
    assert set().union(*parts) == set(range(len(rows)))


def test_fuzz_corpus_covers_the_kinds(tmp_path):
    """At least ten kinds overall, each format with every kind it can express and 1,000+ bad rows."""
    kinds_by_format = {}
    for suffix in FORMATS:
        _, rows = _corpus(suffix, tmp_path)
        kinds = Counter(row.kind for row in rows if not row.good)
        assert sum(kinds.values()) >= 1000
        kinds_by_format[suffix] = kinds
    assert set(kinds_by_format[".jsonl"]) == set(JSON_KINDS + JSONL_ONLY_KINDS)
    assert set(kinds_by_format[".json"]) == set(JSON_KINDS)
    assert set(kinds_by_format[".parquet"]) == set(PARQUET_KINDS)
    assert set(kinds_by_format[".csv"]) == set(CSV_KINDS)
    assert len(set().union(*kinds_by_format.values())) >= 10
    assert all(len(kinds) >= 10 for kinds in kinds_by_format.values())
