"""The plain-data codec between the judge and the program process, and the judge's answers to
messages a hostile program could send. No sandbox needed: the program's side is played here."""

from __future__ import annotations

import collections
import math
import os
import threading

import pytest

from daar.evaluate import _sandbox_judge as judge
from daar.evaluate import _sandbox_wire as wire


def test_plain_data_round_trips_into_the_receivers_own_types() -> None:
    values = [
        None, True, False, 0, -1, 2**200, -(2**70), 1.5, float("inf"), 1 + 2j, "", "x\udc80é", b"\x00\xff",
        [1, [2, (3, {4: "a", (5, 6): [None]})]], (), {frozenset({1}), (2, "b")}, {"k": {1.0: 2}},
        collections.Counter("abca"), collections.OrderedDict(b=1, a=2), collections.deque([1, 2], 3),
        collections.defaultdict(list, {1: [2]}), collections.defaultdict(None, {}),
    ]
    for value in values:
        back = wire.decode(wire.encode(value))
        assert back == value and type(back) is type(value), value
    assert wire.decode(wire.encode(collections.deque([1], 3))).maxlen == 3
    assert wire.decode(wire.encode(collections.defaultdict(set)))["new"] == set()
    assert math.isnan(wire.decode(wire.encode(float("nan"))))  # type: ignore[arg-type]


class Int(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (object(), "'object' object, which is not plain data"),
        (Int(3), "'Int' object"),
        ([1, {2: print}], "'builtin_function_or_method' object"),
        (collections.defaultdict(lambda: 0), "default_factory is not a builtin type"),
        ("x" * (wire.MAX_BYTES + 1), "MiB allowed"),
        ([b"x" * (1 << 20)] * 17, "MiB allowed"),
    ],
    ids=["object", "int-subclass", "function-inside", "lambda-factory", "huge-string", "huge-list-of-pieces"],
)
def test_what_is_not_plain_data_is_refused(value: object, words: str) -> None:
    with pytest.raises(wire.WireError, match=words.replace("(", r"\(").replace("'", "'")):
        wire.encode(value)


def test_cycles_and_deep_nesting_are_refused() -> None:
    cycle: list = []
    cycle.append(cycle)
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 2):
        deep = [deep]
    for value in (cycle, deep):
        with pytest.raises(wire.WireError, match="nested more than"):
            wire.encode(value)
    with pytest.raises(wire.WireError, match="nested more than"):
        wire.decode(b"l\x01\x00\x00\x00" * (wire.MAX_DEPTH + 2) + b"N")


@pytest.mark.parametrize(
    "data",
    [
        b"", b"X", b"i\x05\x00\x00\x00\x01", b"NN", b"l\xff\xff\xff\x00N", b"s\x02\x00\x00\x00\xff\xfe",
        b"S\x01\x00\x00\x00l\x00\x00\x00\x00", b"d\x01\x00\x00\x00l\x00\x00\x00\x00N", b"f\x00\x00",
        b"D\x05\x00\x00\x00printd\x00\x00\x00\x00", b"C" + wire.encode([1]), b"Q" + wire.encode(None) + b"N",
        b"h\x00\x00\x00\x00", b"B\x03\x00\x00\x00int",
    ],
    ids=["empty", "unknown-tag", "truncated-int", "trailing-bytes", "length-beyond-the-end", "bad-utf8",
         "unhashable-set-item", "unhashable-key", "short-float", "factory-not-allowed", "counter-of-a-list",
         "deque-without-items", "handle-from-the-program", "builtin-from-the-program"],
)
def test_crafted_bytes_give_a_wire_error(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(data)


def test_references_only_where_the_receiver_accepts_them() -> None:
    data = wire.encode((int, [1]), reference=lambda value: value.__name__)
    seen = []
    assert wire.decode(data, lambda kind, key: seen.append((kind, key)) or len) == (len, [1])
    assert seen == [("B", "int")]


def test_messages_cross_a_pipe_in_pieces_and_end_cleanly() -> None:
    read, write = os.pipe()
    payload = wire.encode(list(range(100_000)))
    sender = threading.Thread(target=lambda: (wire.send(write, payload), os.close(write)))
    sender.start()
    assert wire.receive(read) == payload
    assert wire.receive(read) is None  # the other side closed its end
    sender.join()
    os.close(read)
    read, write = os.pipe()
    os.write(write, wire._SIZE.pack(wire.MAX_BYTES + 1))
    with pytest.raises(wire.WireError, match="more than"):
        wire.receive(read)
    os.close(read)
    os.close(write)


def _judged(tests: str, answers: list[object], shared: tuple[str, ...] = ("add",)) -> tuple[str | None, list]:
    """Run `judge.judge` against a scripted program: the first answer is its "ready" message, each
    next one answers a request (raw bytes are sent as they are). Returns the outcome and requests."""
    ask_r, ask_w = os.pipe()
    answer_r, answer_w = os.pipe()
    requests: list = []

    def program() -> None:
        for index, answer in enumerate(answers):
            if index:
                message = wire.receive(ask_r)
                if message is None:
                    break
                requests.append(wire.decode(message, lambda kind, key: (kind, key)))
            wire.send(answer_w, answer if isinstance(answer, bytes) else wire.encode(answer))
        os.close(answer_w)

    thread = threading.Thread(target=program)
    thread.start()
    outcome = judge.judge(tests, shared, {}, judge.Link(ask_w, answer_r))
    os.close(ask_w)
    thread.join()
    for fd in (ask_r, answer_r):
        os.close(fd)
    return outcome, requests


READY = ("ready", {"add": ("object", 0, "function", False)})


def test_the_judge_passes_and_fails_on_plain_answers() -> None:
    assert _judged("assert add(1, 2) == 3\n", [READY, ("ok", 3)]) == ("", [("call", 0, (1, 2), {})])
    outcome, _ = _judged("assert add(1, 2) == 3\n", [READY, ("ok", 7)])
    assert outcome == judge.FAILED + "the tests failed (AssertionError) at line 1"
    outcome, _ = _judged("assert add(1, 2) == 3\n", [READY, ("raise", "ValueError", "no")])
    assert outcome == judge.FAILED + "the tests failed (add() raised ValueError: no) at line 1"
    outcome, _ = _judged("try:\n    add(1, 2)\nexcept ValueError:\n    pass\n", [READY, ("raise", "ValueError", "")])
    assert outcome == ""  # the program's exception is the judge's own ValueError, which the tests expect
    assert _judged("assert add(1, 2) == 3\n", [READY, ("raise", "MemoryError", "")])[0] == judge.MEMORY
    outcome, _ = _judged("assert all(map(add, [1], [2]))\n", [READY, ("raise", "StopIteration", "")])
    assert outcome == judge.FAILED + "the tests failed (add() raised StopIteration) at line 1"  # not an empty map
    assert _judged("assert add(1, 2) == 3\n", [READY])[0] is None  # the program ended: its exit status decides


@pytest.mark.parametrize(
    ("answers", "shared", "words"),
    [
        ([READY, ("handle", 1, "Anything")], ("add",), "add() returned a 'Anything' object, which is not plain data"),
        ([READY, ("bad", "returned a 'X' object, which is not plain data")], ("add",), "add() returned a 'X'"),
        ([READY, ("ok",)], ("add",), "a malformed answer"),
        ([READY, b"\x07"], ("add",), "malformed data"),
        ([("ready", {"__builtins__": ("value", {})})], ("add", "__builtins__"), "an unexpected name"),
        ([("ready", {"check": ("value", 1)})], ("add",), "an unexpected name"),
        ([("ready", {"add": ("object", "0", "f", False)})], ("add",), "a malformed description"),
        ([("hello",)], ("add",), "a malformed first message"),
    ],
    ids=["handle-from-a-function", "not-plain", "short-answer", "garbage", "builtins", "name-not-read",
         "bad-description", "bad-first-message"],
)
def test_answers_the_tests_cannot_use_fail_the_item(answers: list, shared: tuple, words: str) -> None:
    outcome, _ = _judged("try:\n    assert add(1, 2) == 3\nexcept BaseException:\n    pass\n", answers, shared)
    assert outcome is not None and outcome.startswith(judge.FAILED) and words in outcome, outcome


def test_handles_of_the_programs_objects_have_no_value_in_the_judge() -> None:
    ready = ("ready", {"Node": ("object", 0, "type", True), "depth": ("object", 1, "function", False)})
    tests = "root = Node(1)\nroot.left = Node(2)\nassert root.left.data == 2\nassert depth(root) == 2\n"
    answers = [ready, ("handle", 2, "Node"), ("handle", 3, "Node"), ("ok", None), ("handle", 3, "Node"),
               ("ok", 2), ("ok", 2)]
    outcome, requests = _judged(tests, answers, ("Node", "depth"))
    assert outcome == ""
    assert requests == [("call", 0, (1,), {}), ("call", 0, (2,), {}), ("set", 2, "left", ("h", 3)),
                        ("get", 2, "left"), ("get", 3, "data"), ("call", 1, (("h", 2),), {})]
    for use in ("Node(1) == 1", "bool(Node(1))", "hash(Node(1))", "len(Node(1))", "1 in Node(1)"):
        outcome, _ = _judged(f"{use}\n", [ready, ("handle", 2, "Node")], ("Node", "depth"))
        assert outcome == judge.FAILED + "the tests used the value of a 'Node' object of the program (not plain data)"
