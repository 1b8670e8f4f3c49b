"""Row shapes (Alpaca, chat `messages`, ShareGPT `conversations`), field mapping, ids, and bad rows.

Every test writes a real file and reads it back with `read_pool`; each kind of bad row must end as a
rejection naming the row (its position) and the field, next to the good rows around it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from daar.config import FieldMap
from daar.read import CHAT_TEMPLATE_DOC, PoolError, Rejection, RowError, read_pool, to_record

GOOD = {"instruction": "Name a prime.", "output": "7"}


def _fields(pool) -> list[tuple]:
    return [(r.position, r.id, r.instruction, r.input, r.output) for r in pool.records]


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# --- row shapes ----------------------------------------------------------------------------------


def test_alpaca_rows(tmp_path):
    rows = [
        {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
        {"instruction": "Translate", "input": "bonjour", "output": "hello"},
        {"instruction": "No input key at all", "output": "fine"},
        {"instruction": "Null input", "input": None, "output": "fine too"},
        {"instruction": "\tStrip me \n", "input": "  x ", "output": "  y\n"},
    ]
    pool = read_pool(write_jsonl(tmp_path / "alpaca.jsonl", rows))
    assert _fields(pool) == [
        (0, "#0", "Add 2 and 3.", "", "5"),
        (1, "#1", "Translate", "bonjour", "hello"),
        (2, "#2", "No input key at all", "", "fine"),
        (3, "#3", "Null input", "", "fine too"),
        (4, "#4", "Strip me", "x", "y"),
    ]
    assert pool.records[1].text == "Instruction: Translate\nInput: bonjour\nOutput: hello"
    assert pool.records[1].prompt == "Translate\n\nbonjour"
    assert pool.records[1].turns == ()  # one user turn (the prompt) and one assistant turn when tuned
    assert pool.records[1].messages == [
        {"role": "user", "content": "Translate\n\nbonjour"},
        {"role": "assistant", "content": "hello"},
    ]
    assert pool.records[0].prompt == "Add 2 and 3."


def test_messages_chat_rows_last_assistant_turn_is_the_output(tmp_path):
    rows = [
        {
            "id": "chat-1",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And times 3?"},
                {"role": "assistant", "content": " 12 "},
            ],
        },
        {"id": "chat-2", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ]
    pool = read_pool(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert pool.rejected == []
    first, second = pool.records
    assert first.id == "chat-1" and first.input == "" and first.output == "12"
    assert first.instruction == "system: You are terse.\nuser: What is 2+2?\nassistant: 4\nuser: And times 3?"
    assert (second.instruction, second.output) == ("user: Hi", "Hello")
    assert first.text == f"Instruction: {first.instruction}\nOutput: 12"
    assert "last assistant turn is the output" in CHAT_TEMPLATE_DOC
    # tuning keeps the real turns; the prober's text above is the flattened one
    assert first.turns == (
        ("system", "You are terse."),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And times 3?"),
        ("assistant", "12"),
    )
    assert second.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_turns_after_the_last_assistant_answer_are_not_part_of_the_row(tmp_path):
    row = {
        "messages": [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": "thanks"},
        ]
    }
    pool = read_pool(write_jsonl(tmp_path / "chat.jsonl", [row]))
    assert _fields(pool) == [(0, "#0", "user: Q", "", "A")]
    assert pool.records[0].turns == (("user", "Q"), ("assistant", "A"))
    assert pool.records[0].notes == ("field 'messages[2]' after the last assistant answer is not part of the text",)


def test_what_a_chat_row_leaves_out_of_its_text_is_noted_in_its_record(tmp_path):
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    rows = [
        {"messages": turns + [{"role": "user", "content": "more"}, {"role": "user", "content": "?"}]},
        {"messages": turns, "instruction": "also here", "input": " ", "output": None, "conversations": turns},
        {"messages": turns, "instruction": ""},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "messages": None},
        GOOD,
    ]
    pool = read_pool(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert [r.notes for r in pool.records] == [
        ("field 'messages[2]' to 'messages[3]' after the last assistant answer is not part of the text",),
        (
            "field 'conversations' is not used: the text comes from 'messages'",
            "field 'instruction' is not used: the text comes from 'messages'",
        ),
        (),
        (),
        (),
    ]
    assert [r.text for r in pool.records[:2]] == ["Instruction: user: Q\nOutput: A"] * 2
    assert "not part of the text" in CHAT_TEMPLATE_DOC


def test_sharegpt_conversations_rows(tmp_path):
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be kind."},
                {"from": "human", "value": "Tell me a fact."},
                {"from": "gpt", "value": "Water is wet."},
            ]
        },
        {"id": 9, "conversations": [{"from": "Human", "value": "Q?"}, {"from": "GPT", "value": "A."}]},
        {
            "conversations": [
                {"from": "human", "value": "Hi"},
                {"from": "bot", "value": "Hello."},
                {"from": "human", "value": " "},
                {"from": "model", "value": "Still there?"},
            ]
        },
    ]
    pool = read_pool(write_jsonl(tmp_path / "sharegpt.jsonl", rows))
    assert _fields(pool) == [
        (0, "#0", "system: Be kind.\nuser: Tell me a fact.", "", "Water is wet."),
        (1, "9", "user: Q?", "", "A."),
        (2, "#2", "user: Hi\nassistant: Hello.", "", "Still there?"),
    ]
    assert [r.turns for r in pool.records] == [  # roles as chat templates name them; empty turns left out
        (("system", "Be kind."), ("user", "Tell me a fact."), ("assistant", "Water is wet.")),
        (("user", "Q?"), ("assistant", "A.")),
        (("user", "Hi"), ("assistant", "Hello."), ("assistant", "Still there?")),
    ]


def test_chat_and_alpaca_rows_mix_in_one_file(tmp_path):
    rows = [GOOD, {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}]
    pool = read_pool(write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert _fields(pool) == [(0, "#0", "Name a prime.", "", "7"), (1, "#1", "user: u", "", "a")]


def test_field_mapping_for_other_names(tmp_path):
    rows = [
        {"uid": "p1", "prompt": "Capital of France?", "context": "Europe", "response": "Paris"},
        {"uid": "p2", "prompt": "Capital of Peru?", "response": "Lima", "instruction": "ignored"},
        {"uid": "p3", "dialog": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]},
    ]
    fields = FieldMap(id="uid", instruction="prompt", input="context", output="response", messages="dialog")
    pool = read_pool(write_jsonl(tmp_path / "mapped.jsonl", rows), fields=fields)
    assert _fields(pool) == [
        (0, "p1", "Capital of France?", "Europe", "Paris"),
        (1, "p2", "Capital of Peru?", "", "Lima"),
        (2, "p3", "user: Hi", "", "Hey"),
    ]
    # the default names are not used when mapped: the same file without the mapping has no usable row
    with pytest.raises(PoolError, match="field 'instruction' is missing"):
        read_pool(tmp_path / "mapped.jsonl")


def test_field_mapping_only_instruction_and_output(tmp_path):
    rows = [{"prompt": "p", "response": "r"}]
    pool = read_pool(write_jsonl(tmp_path / "m.jsonl", rows), fields=FieldMap(instruction="prompt", output="response"))
    assert _fields(pool) == [(0, "#0", "p", "", "r")]


def test_field_map_rejects_unknown_options():
    with pytest.raises(ValueError):
        FieldMap(instruction="prompt", answer="response")


# --- ids -----------------------------------------------------------------------------------------


def test_ids_from_the_id_field_else_position(tmp_path):
    lines = [
        json.dumps({"id": "alpha", **GOOD}).encode(),
        json.dumps({"id": 42, **GOOD}).encode(),
        json.dumps(GOOD).encode(),
        b"{broken",
        json.dumps({"id": None, **GOOD}).encode(),
        json.dumps({"id": "  beta  ", **GOOD}).encode(),
    ]
    pool = read_pool(_write_lines(tmp_path / "ids.jsonl", lines))
    # positions count every row in file order, rejected ones included
    assert [(r.position, r.id) for r in pool.records] == [(0, "alpha"), (1, "42"), (2, "#2"), (4, "#4"), (5, "beta")]
    assert [r.explicit_id for r in pool.records] == [True, True, False, False, True]
    assert [r.position for r in pool.rejected] == [3]


def test_ids_by_position_in_json_array_and_parquet_order(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text(json.dumps([GOOD, {"instruction": "x"}, GOOD]), encoding="utf-8")
    pool = read_pool(path)
    assert pool.ids == ["#0", "#2"]
    assert pool.rejected == [Rejection(1, None, "pool.json row 1 (line 1): field 'output' is missing")]


# --- bad rows ------------------------------------------------------------------------------------

# (line written at position 1 between two good rows, rejection id, words the reason must contain)
BAD_ROWS = [
    pytest.param(b"{not json", None, ["line 2", "not valid JSON"], id="unreadable-json"),
    pytest.param(b'{"instruction": "caf\xe9", "output": "x"}', None, ["line 2", "not valid UTF-8"], id="non-utf8"),
    pytest.param(b'{"id": "m", "instruction": "q"}', "m", ["field 'output' is missing"], id="missing-output"),
    pytest.param(b'{"instruction": "q", "output": null}', None, ["field 'output' is missing"], id="null-output"),
    pytest.param(b'{"output": "a"}', None, ["field 'instruction' is missing"], id="missing-instruction"),
    pytest.param(b'{"instruction": "   ", "output": "a"}', None, ["field 'instruction' is empty"], id="empty-instr"),
    pytest.param(b'{"instruction": "q", "output": ""}', None, ["field 'output' is empty"], id="empty-output"),
    pytest.param(
        b'{"instruction": 12, "output": "a"}', None, ["field 'instruction' must be a string, got int"], id="number"
    ),
    pytest.param(
        b'{"instruction": "q", "output": ["a", "b"]}', None, ["field 'output' must be a string, got list"], id="list"
    ),
    pytest.param(
        b'{"instruction": "q", "input": {"k": 1}, "output": "a"}',
        None,
        ["field 'input' must be a string, got dict"],
        id="dict-input",
    ),
    pytest.param(
        b'{"instruction": true, "output": "a"}', None, ["field 'instruction' must be a string, got bool"], id="bool"
    ),
    pytest.param(b'{"id": 1.5, **}', None, ["not valid JSON"], id="garbage"),
    pytest.param(
        b'{"id": [1], "instruction": "q", "output": "a"}',
        "[1]",
        ["field 'id' must be a string or integer, got list"],
        id="list-id",
    ),
    pytest.param(
        b'{"id": true, "instruction": "q", "output": "a"}',
        "True",
        ["field 'id' must be a string or integer, got bool"],
        id="bool-id",
    ),
    pytest.param(b'{"id": "  ", "instruction": "q", "output": "a"}', "  ", ["field 'id' is empty"], id="empty-id"),
    pytest.param(b"[1, 2, 3]", None, ["row is a list, expected an object"], id="list-row"),
    pytest.param(b'"just a string"', None, ["row is a str, expected an object"], id="string-row"),
    pytest.param(b"3.5", None, ["row is a float, expected an object"], id="number-row"),
    pytest.param(b"null", None, ["row is null, expected an object"], id="null-row"),
    pytest.param(
        b'{"id": "x", "instruction": "a", "instruction": "b", "output": "o"}',
        "x",
        ["field 'instruction' is given more than once", "ambiguous"],
        id="repeated-key",
    ),
    pytest.param(b'{"messages": "hello"}', None, ["field 'messages' must be a non-empty list of turns"], id="msg-str"),
    pytest.param(b'{"messages": []}', None, ["field 'messages' must be a non-empty list of turns"], id="msg-empty"),
    pytest.param(b'{"messages": ["hi"]}', None, ["field 'messages[0]' must be an object"], id="turn-not-object"),
    pytest.param(
        b'{"messages": [{"content": "hi"}, {"role": "assistant", "content": "a"}]}',
        None,
        ["field 'messages[0]' has no role/from"],
        id="turn-no-role",
    ),
    pytest.param(
        b'{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}',
        None,
        ["field 'messages[0]' has no string content/value"],
        id="turn-number-content",
    ),
    pytest.param(
        b'{"messages": [{"role": "user", "content": "q"}]}',
        None,
        ["field 'messages' has no assistant turn"],
        id="no-assistant",
    ),
    pytest.param(
        b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}',
        None,
        ["field 'messages[1]'", "is empty"],
        id="empty-answer",
    ),
    pytest.param(
        b'{"messages": [{"role": "assistant", "content": "a"}]}',
        None,
        ["field 'messages' has no turn before the assistant answer"],
        id="answer-only",
    ),
    pytest.param(
        b'{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]}',
        None,
        ["field 'conversations[1]' has no string content/value"],
        id="sharegpt-no-value",
    ),
]


@pytest.mark.parametrize(("line", "row_id", "words"), BAD_ROWS)
def test_each_bad_row_is_rejected_with_a_reason(tmp_path, line, row_id, words):
    path = _write_lines(
        tmp_path / "pool.jsonl",
        [json.dumps({"id": "first", **GOOD}).encode(), line, json.dumps({"id": "last", **GOOD}).encode()],
    )
    pool = read_pool(path)
    assert pool.ids == ["first", "last"]
    assert [r.position for r in pool.records] == [0, 2]
    assert pool.rows_in == 3 == len(pool.records) + len(pool.rejected)
    assert len(pool.rejected) == 1
    rejection = pool.rejected[0]
    assert rejection.position == 1
    assert rejection.id == row_id
    for word in words:
        assert word in rejection.reason


def test_duplicate_id_rejects_the_later_row_and_names_the_first(tmp_path):
    rows = [
        {"id": "x", **GOOD},
        {"id": "y", **GOOD},
        {"id": "x", "instruction": "another", "output": "row"},
        {"id": "x", "instruction": "third", "output": "copy"},
    ]
    pool = read_pool(write_jsonl(tmp_path / "dup.jsonl", rows))
    assert pool.ids == ["x", "y"]
    assert pool.records[0].instruction == "Name a prime."
    assert pool.rejected == [
        Rejection(2, "x", "dup.jsonl row 2 (line 3): field 'id': duplicate id 'x' (first seen at row 0)"),
        Rejection(3, "x", "dup.jsonl row 3 (line 4): field 'id': duplicate id 'x' (first seen at row 0)"),
    ]


def test_integer_and_string_ids_with_the_same_text_are_duplicates(tmp_path):
    rows = [{"id": 7, **GOOD}, {"id": "7", **GOOD}]
    pool = read_pool(write_jsonl(tmp_path / "dup.jsonl", rows))
    assert pool.ids == ["7"]
    assert [(r.position, r.id) for r in pool.rejected] == [(1, "7")]


def test_every_kind_of_bad_row_together_keeps_the_counts(tmp_path):
    lines = []
    for i in range(30):
        lines.append(json.dumps({"id": f"g{i}", **GOOD}).encode())
        lines.append(BAD_ROWS[i % len(BAD_ROWS)].values[0])
    lines.append(json.dumps({"id": "g0", **GOOD}).encode())  # a duplicate as well
    pool = read_pool(_write_lines(tmp_path / "messy.jsonl", lines))
    assert pool.rows_in == 61 == len(pool.records) + len(pool.rejected)
    assert pool.ids == [f"g{i}" for i in range(30)]
    assert [r.position for r in pool.rejected] == list(range(1, 61, 2)) + [60]
    assert all(r.reason for r in pool.rejected)
    seen = sorted([r.position for r in pool.records] + [r.position for r in pool.rejected])
    assert seen == list(range(61))


# --- to_record directly --------------------------------------------------------------------------


def test_to_record_normalises_and_raises_row_error():
    record = to_record({"id": 3, "instruction": " q ", "output": "a"}, 10, FieldMap())
    assert (record.position, record.id, record.instruction, record.input, record.output) == (10, "3", "q", "", "a")
    assert record.raw == {"id": 3, "instruction": " q ", "output": "a"}
    with pytest.raises(RowError, match="field 'output' is missing"):
        to_record({"instruction": "q"}, 0, FieldMap())
    assert issubclass(RowError, ValueError)


def test_records_compare_by_value_not_by_raw_row():
    one = to_record({"instruction": "q", "output": "a", "extra": 1}, 0, FieldMap())
    two = to_record({"instruction": "q", "output": "a", "extra": 2}, 0, FieldMap())
    assert one == two
