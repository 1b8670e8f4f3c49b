"""Normalised rows and the rules that turn a raw mapping into one, or into a rejection.

Every input row ends in exactly one of two lists here (kept or rejected with a reason), so the
counts a run reports always add up to the rows it read. A RowError's message names the field
("field 'output' must be a string, got int"); the reader puts the file and row in front of it.

Ids:

- An explicit id is the row's id field, a string or an integer (not a bool), stripped of
  surrounding spaces and not empty; the integer 7 and the string "7" are the same id.
- A row whose id field is missing or null gets the positional id "#<position>" ("#17" for the row
  at position 17, counting every row of the file from 0), and `explicit_id` False.
- Duplicates are looked for among explicit ids only (`read_pool` rejects the later row), so a row
  without an id is never a duplicate, whatever ids its neighbours have.
- Positional ids never collide with explicit ones: where a file's own ids include the spelling
  "#17", the row at position 17 without an id becomes "##17" (one more "#" until the spelling is
  free). Every kept row therefore has a distinct id, and explicit ids are never changed.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from daar.config import FieldMap

CHAT_TEMPLATE_DOC = (
    "Chat rows (`messages` with role/content, or ShareGPT `conversations` with from/value; ShareGPT's "
    "human is user, gpt/bot/model are assistant): the last assistant turn is the output; every earlier "
    "turn is written as '<role>: <content>' on its own line and the lines together form the instruction; "
    "input is empty. That is the text the prober reads; `daar tune` trains on the turns themselves, "
    "through the learner's chat template, with the loss on every assistant turn. Turns after the last "
    "assistant turn, and instruction/input/output fields next to the chat field, are not part of the "
    "text; the row's record says so in its notes. Turns with empty content are left out of both."
)
_ROLE_NAMES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


@dataclass(frozen=True)
class Record:
    """One usable row: its position in the file, its id, the three text fields and the raw row."""

    position: int
    id: str
    instruction: str
    input: str
    output: str
    raw: dict[str, Any] = field(repr=False, compare=False)
    explicit_id: bool = True  # False: the row had no id and `id` is positional ("#<position>")
    notes: tuple[str, ...] = ()  # what of the row is not part of its text, and why
    turns: tuple[tuple[str, str], ...] = ()  # a chat row's (role, content) turns, up to its last answer

    @property
    def text(self) -> str:
        """The text the prober reads (docs/METHOD.md, step 1, the authors' probe template)."""
        parts = [f"Instruction: {self.instruction}"]
        if self.input:
            parts.append(f"Input: {self.input}")
        parts.append(f"Output: {self.output}")
        return "\n".join(parts)

    @property
    def prompt(self) -> str:
        """Instruction and input joined, the side a learner is conditioned on."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    @property
    def messages(self) -> list[dict[str, str]]:
        """The dialogue a learner is tuned on: a chat row's own turns, or one user turn (`prompt`) and
        one assistant turn (`output`) for an instruction row."""
        turns = self.turns or (("user", self.prompt), ("assistant", self.output))
        return [{"role": role, "content": content} for role, content in turns]


@dataclass(frozen=True)
class Rejection:
    position: int
    id: str | None
    reason: str


class RowError(ValueError):
    """A row that cannot be used; the message names the field."""


def to_record(raw: Any, position: int, fields: FieldMap) -> Record:
    """Normalise one raw row or raise RowError naming the offending field."""
    if not isinstance(raw, dict):
        raise RowError(f"row is {_a(raw)}, expected an object")
    row_id = _row_id(raw, fields)
    explicit = row_id is not None
    if row_id is None:
        row_id = positional_id(position)
    # A chat key holding null counts as absent: a Parquet or CSV file has every column in every row.
    key = next((k for k in (fields.messages, fields.conversations) if raw.get(k) is not None), None)
    if key is not None:
        instruction, output, notes, turns = _from_chat(raw[key], key)
        for name in (fields.conversations, fields.instruction, fields.input, fields.output):
            if _given(raw, key, name):
                notes.append(f"field '{name}' is not used: the text comes from '{key}'")
        return Record(position, row_id, instruction, "", output, raw, explicit, tuple(notes), turns)
    instruction = _text_field(raw, fields.instruction, required=True)
    input_text = _text_field(raw, fields.input, required=False)
    output = _text_field(raw, fields.output, required=True)
    return Record(position, row_id, instruction, input_text, output, raw, explicit)


def _kind(value: Any) -> str:
    """The type of a value as a reason names it: JSON's null for None, else Python's name."""
    return "null" if value is None else type(value).__name__


def _a(value: Any) -> str:
    """"null", "a list", "an int"."""
    kind = _kind(value)
    return kind if value is None else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _given(raw: dict[str, Any], chat_key: str, name: str) -> bool:
    """Whether a row next to its chat field also holds `name` with something in it."""
    value = raw.get(name)
    return name != chat_key and value is not None and not (isinstance(value, str) and not value.strip())


def positional_id(position: int) -> str:
    """The id of a row that has none (see the module docstring)."""
    return f"#{position}"


def _row_id(raw: dict[str, Any], fields: FieldMap) -> str | None:
    value = raw.get(fields.id)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowError(f"field '{fields.id}' must be a string or integer, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RowError(f"field '{fields.id}' is empty")
    _check_unicode(text, fields.id)
    return text


def _check_unicode(text: str, name: str) -> None:
    """Text fields must encode as UTF-8; a JSON escape such as \\ud800 gives an unpaired surrogate."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RowError(
            f"field '{name}' is not valid Unicode text "
            f"(unpaired surrogate U+{ord(text[err.start]):04X} at character {err.start})"
        ) from None


def _text_field(raw: dict[str, Any], name: str, *, required: bool) -> str:
    value = raw.get(name)
    if value is None:
        if required:
            raise RowError(f"field '{name}' is missing")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {type(value).__name__}")
    text = value.strip()
    if required and not text:
        raise RowError(f"field '{name}' is empty")
    _check_unicode(text, name)
    return text


def _from_chat(turns: Any, key: str) -> tuple[str, str, list[str], tuple[tuple[str, str], ...]]:
    """Instruction, output, notes and (role, content) turns of a chat row (see CHAT_TEMPLATE_DOC)."""
    if not isinstance(turns, list) or not turns:
        got = "an empty list" if isinstance(turns, list) else type(turns).__name__
        raise RowError(f"field '{key}' must be a non-empty list of turns, got {got}")
    rendered: list[tuple[str, str]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RowError(f"field '{key}[{i}]' must be an object, got {_kind(turn)}")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if not isinstance(role, str) or not role.strip():
            raise RowError(f"field '{key}[{i}]' has no role/from")
        if not isinstance(content, str):
            raise RowError(f"field '{key}[{i}]' has no string content/value (got {_kind(content)})")
        _check_unicode(role, f"{key}[{i}]")
        _check_unicode(content, f"{key}[{i}]")
        role = role.strip().lower()
        rendered.append((_ROLE_NAMES.get(role, role), content.strip()))
    last = max((i for i, (role, _) in enumerate(rendered) if role == "assistant"), default=None)
    if last is None:
        raise RowError(f"field '{key}' has no assistant turn to use as output")
    output = rendered[last][1]
    if not output:
        raise RowError(f"field '{key}[{last}]' (the assistant answer) is empty")
    instruction = "\n".join(f"{role}: {content}" for role, content in rendered[:last] if content)
    if not instruction:
        raise RowError(f"field '{key}' has no turn before the assistant answer")
    notes = []
    if last < len(rendered) - 1:
        after = f"'{key}[{last + 1}]'" + (f" to '{key}[{len(rendered) - 1}]'" if last < len(rendered) - 2 else "")
        notes.append(f"field {after} after the last assistant answer is not part of the text")
    kept = tuple((role, content) for role, content in rendered[: last + 1] if content)
    return instruction, output, notes, kept


def duplicate_id_problem(id_field: str, row_id: str, first_seen: str) -> str:
    """The reason a later row with an explicit id seen before is rejected (`first_seen`: where)."""
    return f"field '{id_field}': duplicate id '{row_id}' (first seen at {first_seen})"


def free_positional_id(row_id: str, explicit: Container[str]) -> str:
    """A positional id ("#17") made distinct from the file's explicit ids: one more "#" until free."""
    while row_id in explicit:
        row_id = "#" + row_id
    return row_id
