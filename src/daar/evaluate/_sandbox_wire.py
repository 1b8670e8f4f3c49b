"""Plain data between the judge (the launcher, which runs a benchmark's tests) and the program process.

Why a codec of our own: the judge must never rebuild an object the program chose (an object whose
`__eq__` is always true would pass every assert), so it decodes only plain data into objects of its
own: None, bools, ints, floats, complex numbers, str, bytes, lists, tuples, dicts, sets, frozensets,
and the containers of `collections` that MBPP answers return (Counter, OrderedDict, defaultdict with
a builtin factory, deque), rebuilt by the judge from their items. pickle and marshal rebuild what the
data names and are not safe against crafted input; json has no tuples, sets or int keys, and its
import costs ~10 ms per run. Sizes and depth are bounded, so crafted bytes give a `WireError`, never
a hang or a crash of the judge.

Both sides use this file: the launcher imports it from its folder (it runs as `python -I -S`, without
the package on its path; the program process is a fork of it). The judge also sends references to
the program's own objects (handles) and to builtins such as `int` (MBPP/533 passes a type); only the
program's side accepts those.
"""

from __future__ import annotations

import builtins
import os
import struct

MAX_BYTES = 16 << 20  # a larger message is refused: no benchmark answer comes near it
MAX_DEPTH = 64
_SIZE, _FLOAT, _COMPLEX = struct.Struct("<I"), struct.Struct("<d"), struct.Struct("<dd")
_SEQUENCES = {list: b"l", tuple: b"t", set: b"S", frozenset: b"z"}
_BUILD = {b"l": list, b"t": tuple, b"S": set, b"z": frozenset}
_COLLECTIONS = {"Counter": b"C", "OrderedDict": b"O", "defaultdict": b"D", "deque": b"Q"}
_FACTORIES = ("list", "int", "set", "dict", "str", "float", "tuple", "frozenset", "bool", "complex", "bytes")


class WireError(ValueError):
    """Bytes that are not a message: too large, too deep, truncated, or a value not allowed here."""


def encode(value: object, reference: object = None) -> bytes:
    """The bytes of `value`. Anything that is not plain data goes to `reference(value)`, which returns
    a handle number (int) or a builtin's name (str); without it, or if it returns None, WireError."""
    out = bytearray()
    _encode(value, out, 0, reference)
    if len(out) > MAX_BYTES:
        raise WireError(f"{len(out) >> 20} MiB of data, more than the {MAX_BYTES >> 20} MiB allowed")
    return bytes(out)


def _encode(value: object, out: bytearray, depth: int, reference: object) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"data nested more than {MAX_DEPTH} levels deep")
    if len(out) > MAX_BYTES:
        raise WireError(f"more than the {MAX_BYTES >> 20} MiB allowed")
    kind = type(value)
    if value is None or value is True or value is False:
        out += b"N" if value is None else b"T" if value else b"F"
    elif kind is int:
        data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)  # type: ignore[attr-defined]
        out += b"i" + _SIZE.pack(len(data)) + data
    elif kind is float:
        out += b"f" + _FLOAT.pack(value)
    elif kind is complex:
        out += b"c" + _COMPLEX.pack(value.real, value.imag)  # type: ignore[attr-defined]
    elif kind is str or kind is bytes:
        data = value.encode("utf-8", "surrogatepass") if kind is str else value  # type: ignore[attr-defined]
        out += (b"s" if kind is str else b"b") + _SIZE.pack(len(data)) + data
    elif kind in _SEQUENCES:
        out += _SEQUENCES[kind] + _SIZE.pack(len(value))  # type: ignore[arg-type]
        for item in value:  # type: ignore[attr-defined]
            _encode(item, out, depth + 1, reference)
    elif kind is dict:
        _encode_items(b"d", dict.items(value), out, depth, reference)  # type: ignore[arg-type]
    elif kind.__module__ == "collections" and kind.__name__ in _COLLECTIONS:
        _encode_collection(value, out, depth, reference)
    else:
        found = None if reference is None else reference(value)  # type: ignore[operator]
        if found is None:
            raise WireError(f"a {kind.__name__!r} object, which is not plain data")
        out += b"h" + _SIZE.pack(found) if type(found) is int else b"B" + _SIZE.pack(len(found)) + found.encode()


def _encode_items(tag: bytes, items: object, out: bytearray, depth: int, reference: object) -> None:
    pairs = list(items)  # type: ignore[call-overload]
    out += tag + _SIZE.pack(len(pairs))
    for key, item in pairs:
        _encode(key, out, depth + 1, reference)
        _encode(item, out, depth + 1, reference)


def _encode_collection(value: object, out: bytearray, depth: int, reference: object) -> None:
    """Counter, OrderedDict, defaultdict and deque as their items; the receiver builds its own."""
    name = type(value).__name__
    tag = _COLLECTIONS[name]
    if name == "defaultdict":
        factory = value.default_factory  # type: ignore[attr-defined]
        label = "" if factory is None else getattr(factory, "__name__", "")
        if factory is not None and (label not in _FACTORIES or getattr(builtins, label) is not factory):
            raise WireError("a defaultdict whose default_factory is not a builtin type")
        out += tag + _SIZE.pack(len(label)) + label.encode()
        _encode_items(b"d", dict.items(value), out, depth, reference)  # type: ignore[arg-type]
    elif name == "deque":
        maxlen = value.maxlen  # type: ignore[attr-defined]
        out += tag
        _encode(None if maxlen is None else int(maxlen), out, depth + 1, reference)
        _encode(list(value), out, depth + 1, reference)  # type: ignore[call-overload]
    else:
        out += tag
        _encode_items(b"d", dict.items(value), out, depth, reference)  # type: ignore[arg-type]


def decode(data: bytes, resolve: object = None) -> object:
    """The value in `data`, built from objects of this process only. Handles and builtins' names are
    accepted only with `resolve(kind, key)` (kind "h" with a number, "B" with a name)."""
    if len(data) > MAX_BYTES:
        raise WireError(f"a message of {len(data) >> 20} MiB, more than the {MAX_BYTES >> 20} MiB allowed")
    try:
        value, end = _decode(memoryview(data), 0, 0, resolve)
    except (struct.error, IndexError, UnicodeDecodeError, TypeError, OverflowError) as error:
        raise WireError(f"malformed data: {error}") from None
    if end != len(data):
        raise WireError("malformed data: bytes left after the value")
    return value


def _size(data: memoryview, at: int) -> tuple[int, int]:
    (count,) = _SIZE.unpack_from(data, at)
    if count > len(data) - at - 4:  # every item takes at least one byte
        raise WireError("malformed data: a length beyond the end")
    return count, at + 4


def _decode(data: memoryview, at: int, depth: int, resolve: object) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise WireError(f"data nested more than {MAX_DEPTH} levels deep")
    tag, at = bytes(data[at : at + 1]), at + 1
    if tag in (b"N", b"T", b"F"):
        return {b"N": None, b"T": True, b"F": False}[tag], at
    if tag == b"f":
        return _FLOAT.unpack_from(data, at)[0], at + 8
    if tag == b"c":
        return complex(*_COMPLEX.unpack_from(data, at)), at + 16
    if tag in (b"i", b"s", b"b", b"B"):
        count, at = _size(data, at)
        raw = bytes(data[at : at + count])
        if tag == b"i":
            return int.from_bytes(raw, "little", signed=True), at + count
        if tag == b"s":
            return raw.decode("utf-8", "surrogatepass"), at + count
        return (raw if tag == b"b" else _resolve(resolve, "B", raw.decode("ascii"))), at + count
    if tag in _BUILD:
        count, at = _size(data, at)
        items = []
        for _ in range(count):
            item, at = _decode(data, at, depth + 1, resolve)
            items.append(item)
        return _BUILD[tag](items), at
    if tag == b"d":
        count, at = _size(data, at)
        result: dict = {}
        for _ in range(count):
            key, at = _decode(data, at, depth + 1, resolve)
            result[key], at = _decode(data, at, depth + 1, resolve)
        return result, at
    if tag == b"h":
        (number,) = _SIZE.unpack_from(data, at)
        return _resolve(resolve, "h", number), at + 4
    if tag in (b"C", b"O", b"D", b"Q"):
        return _decode_collection(tag, data, at, depth, resolve)
    raise WireError(f"malformed data: unknown tag {tag!r}")


def _decode_collection(tag: bytes, data: memoryview, at: int, depth: int, resolve: object) -> tuple[object, int]:
    import collections  # only where an answer returns one

    if tag == b"D":
        count, at = _size(data, at)
        label = bytes(data[at : at + count]).decode("ascii")
        if label and label not in _FACTORIES:
            raise WireError(f"malformed data: a defaultdict factory {label!r}")
        items, at = _decode(data, at + count, depth + 1, resolve)
        return collections.defaultdict(getattr(builtins, label) if label else None, _dict(items)), at
    if tag == b"Q":
        maxlen, at = _decode(data, at, depth + 1, resolve)
        items, at = _decode(data, at, depth + 1, resolve)
        if (maxlen is not None and type(maxlen) is not int) or type(items) is not list:
            raise WireError("malformed data: a deque")
        return collections.deque(items, maxlen), at
    items, at = _decode(data, at, depth + 1, resolve)
    build = collections.Counter if tag == b"C" else collections.OrderedDict
    return build(_dict(items)), at


def _dict(value: object) -> dict:
    if type(value) is not dict:
        raise WireError("malformed data: a mapping without items")
    return value  # type: ignore[return-value]


def _resolve(resolve: object, kind: str, key: object) -> object:
    if resolve is None:
        raise WireError("a reference to an object, which only the judge may send")
    return resolve(kind, key)  # type: ignore[operator]


def send(fd: int, payload: bytes) -> None:
    """One message: its length, then its bytes (a pipe takes them in pieces)."""
    view = memoryview(_SIZE.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int, limit: int = MAX_BYTES) -> bytes | None:
    """The next message, or None once the other side closed its end (or died while writing)."""
    head = _read(fd, 4)
    if head is None:
        return None
    (size,) = _SIZE.unpack(head)
    if size > limit:
        raise WireError(f"a message of {size >> 20} MiB, more than the {limit >> 20} MiB allowed")
    return _read(fd, size)


def _read(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
