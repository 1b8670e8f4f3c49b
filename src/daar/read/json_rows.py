"""JSON lines and JSON array files as rows (see daar.read.formats for the rules): a .jsonl line
that is not valid JSON rejects that row only, a .json file must parse as a whole, and a row whose
object names a key twice is rejected, since which of the values it meant is unknown."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daar.read.raw import ESCAPED_BYTE, PoolError, RawRow, escaped_field, not_utf8, open_bytes

_WHITESPACE = re.compile(r"[ \t\n\r]*")


class _Repeated(dict):
    """A JSON object that names a key more than once, with the first such key. json keeps the last
    value without a word, so which value the row meant is unknown: the row is rejected."""

    key: str = ""


def _decoder() -> tuple[json.JSONDecoder, list[str]]:
    """A decoder that marks objects with a repeated key, and the list it appends each such key to
    (so that rows without one cost no walk over their values)."""
    repeated: list[str] = []

    def make_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        marked, seen = _Repeated(value), set()
        for key, _ in pairs:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        repeated.append(marked.key)
        return marked

    return json.JSONDecoder(object_pairs_hook=make_object), repeated


def _repeated_key(value: Any, where: str = "") -> str | None:
    """The first repeated key in a parsed value, as a dotted path ("messages[1].role", the way
    escaped_field names fields)."""
    if isinstance(value, _Repeated):
        return f"{where}.{value.key}" if where else value.key
    if isinstance(value, dict):
        children = [(f"{where}.{key}" if where else key, item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    else:
        return None
    for path, item in children:
        found = _repeated_key(item, path)
        if found is not None:
            return found
    return None


def _repeated_problem(value: Any) -> str:
    return f"field '{_repeated_key(value)}' is given more than once (the row's text is ambiguous)"


def _json_message(err: json.JSONDecodeError) -> str:
    """json's message without a dangling "at" ("Invalid control character at"), as the caller
    adds the place itself."""
    return err.msg.removesuffix(" at")


def jsonl_rows(path: Path, start: tuple[int, int, int] = (0, 0, 1)) -> Iterator[RawRow]:
    """Rows from `start` = (position, byte offset, line) on; daar.read.streams finds the offsets."""
    position, offset, first_line = start
    decoder, repeated = _decoder()
    with open_bytes(path) as handle:
        if offset:
            handle.seek(offset)
        for line_no, line in enumerate(handle, start=first_line):
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):  # a leading BOM is not data
                line = line[3:]
            if not line.strip():
                continue
            try:
                text, bad_utf8 = line.decode("utf-8"), None
            except UnicodeDecodeError as err:
                text, bad_utf8 = line.decode("utf-8", errors="surrogateescape"), err
            row = RawRow(position, line_no)
            repeated.clear()
            try:
                row.raw = decoder.decode(text)
            except json.JSONDecodeError as err:
                row.problem = (
                    not_utf8(bad_utf8, "of the line")
                    if bad_utf8
                    else f"not valid JSON ({_json_message(err)} at column {err.colno})"
                )
            except RecursionError:
                row.problem = "not valid JSON (nested too deeply to read)"
            except ValueError as err:  # e.g. an integer of more than 4300 digits
                row.problem = f"not valid JSON ({err})"
            else:
                if bad_utf8 is not None:
                    row.problem = not_utf8(bad_utf8, "of the line", escaped_field(row.raw))
                elif repeated:
                    row.problem = _repeated_problem(row.raw)
            yield row
            position += 1


def json_array_rows(path: Path) -> Iterator[RawRow]:
    with open_bytes(path) as handle:
        data = handle.read()
    try:
        text, bad_utf8 = data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        text, bad_utf8 = data.decode("utf-8-sig", errors="surrogateescape"), err
    decoder, repeated = _decoder()
    try:
        elements = _top_level_rows(decoder, text, path)
    except PoolError:
        raise
    except json.JSONDecodeError as err:
        if bad_utf8 is not None:  # bytes that are not UTF-8 outside any string break the JSON
            raise PoolError(f"{path}: not valid UTF-8 at byte {bad_utf8.start}") from err
        where = f"line {err.lineno} column {err.colno}"
        raise PoolError(f"{path}: not valid JSON ({_json_message(err)} at {where})") from err
    except RecursionError as err:
        raise PoolError(f"{path}: not valid JSON (a row is nested too deeply to read)") from err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise PoolError(f"{path}: not valid JSON ({err})") from err
    for position, (value, line, start, end) in enumerate(elements):
        row = RawRow(position, line, value)
        if bad_utf8 is not None and ESCAPED_BYTE.search(text, start, end):
            row.problem = __not_utf8_in_array(value, text, start, end)
        elif repeated and _repeated_key(value) is not None:  # any in the file: look in each row
            row.problem = _repeated_problem(value)
        yield row


def __not_utf8_in_array(value: Any, text: str, start: int, end: int) -> str:
    found = ESCAPED_BYTE.search(text, start, end)
    assert found is not None
    byte = ord(found.group()) - 0xDC00
    name = escaped_field(value)
    what = f"field '{name}' is" if name else "row is"
    line = text.count("\n", 0, found.start()) + 1
    return f"{what} not valid UTF-8 (byte 0x{byte:02x} at line {line})"


def _top_level_rows(decoder: json.JSONDecoder, text: str, path: Path) -> list[tuple[Any, int, int, int]]:
    """(row, line, start, end) for each element of the top-level array, or of the "data" array
    member of a top-level object; raises JSONDecodeError where the text is not JSON."""
    i = _WHITESPACE.match(text, 0).end()
    if text.startswith("[", i):
        elements, end = _array_elements(decoder, text, i)
    elif text.startswith("{", i):
        elements, end = _data_member(decoder, text, i, path)
        if elements is None:
            raise PoolError(f"{path}: a .json pool must be an array of rows (or an object with a 'data' array)")
    else:
        value, end = decoder.raw_decode(text, i)  # raises for text that is not JSON at all
        raise PoolError(f"{path}: a .json pool must be an array of rows, not a {type(value).__name__}")
    end = _WHITESPACE.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return elements


def _array_elements(decoder: json.JSONDecoder, text: str, i: int) -> tuple[list[tuple[Any, int, int, int]], int]:
    """Parse the array starting at text[i] == '['; each element with its line and span."""
    elements: list[tuple[Any, int, int, int]] = []
    i = _WHITESPACE.match(text, i + 1).end()
    if text.startswith("]", i):
        return elements, i + 1
    line, counted = 1, 0
    while True:
        line += text.count("\n", counted, i)
        counted = i
        value, end = decoder.raw_decode(text, i)
        elements.append((value, line, i, end))
        i = _WHITESPACE.match(text, end).end()
        if text.startswith(",", i):
            i = _WHITESPACE.match(text, i + 1).end()
        elif text.startswith("]", i):
            return elements, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter or ']'", text, i)


def _data_member(
    decoder: json.JSONDecoder, text: str, i: int, path: Path
) -> tuple[list[tuple[Any, int, int, int]] | None, int]:
    """Parse the object starting at text[i] == '{'; the rows of its "data" member if that is an
    array, else None. A second "data" member stops the read: json.loads would keep the last one
    and drop the rows of the first without a word."""
    rows: list[tuple[Any, int, int, int]] | None = None
    seen_data = False
    i = _WHITESPACE.match(text, i + 1).end()
    if text.startswith("}", i):
        return rows, i + 1
    while True:
        if not text.startswith('"', i):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = decoder.raw_decode(text, i)
        i = _WHITESPACE.match(text, i).end()
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        i = _WHITESPACE.match(text, i + 1).end()
        if key == "data" and seen_data:
            raise PoolError(f"{path}: the member 'data' is given more than once (which rows it holds is ambiguous)")
        seen_data = seen_data or key == "data"
        if key == "data" and text.startswith("[", i):
            rows, i = _array_elements(decoder, text, i)
        else:
            _, i = decoder.raw_decode(text, i)
        i = _WHITESPACE.match(text, i).end()
        if text.startswith(",", i):
            i = _WHITESPACE.match(text, i + 1).end()
        elif text.startswith("}", i):
            return rows, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter or '}'", text, i)
