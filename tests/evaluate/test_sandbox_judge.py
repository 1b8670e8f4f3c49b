"""Benchmark items as the evaluator runs them: the tests in the launcher (the judge), each call they
make answered by the program with plain data (issue 26, item 4). Hostile answers that try to pass
without being right, answers the judge must refuse with a reason, and the three ways to pass that
were documented limits before: the token read from the harness, an object equal to everything, and
the tests' modules patched through `gc`.

Like test_sandbox_hostile.py, the corpus runs once, in parallel, in a module fixture, and the module
is skipped only where `barrier_available()` says no.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from daar.evaluate.sandbox import SandboxResult, barrier_available, run_python

pytestmark = pytest.mark.skipif(not barrier_available()[0], reason=f"no barrier: {barrier_available()[1]}")

WRONG = "def add(a, b):\n    return 7\n"
RIGHT = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
FAILED, TIMEOUT, MEMORY, PASSED = ("failed",), ("timeout",), ("memory",), ("passed",)


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    expect: tuple[str, ...]
    timeout: float = 5.0
    tests: str | None = None
    detail: str = ""  # words the verdict's detail must contain

    def run(self) -> SandboxResult:
        return run_python(self.code, self.timeout, 256, tests=self.tests)


CASES = [
    Case("judge-always-equal-object",
         "class Anything:\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Anything()",
         FAILED, tests=TESTS, detail="add() returned a 'Anything' object, which is not plain data"),
    Case("judge-int-subclass-always-equal",
         "class Int(int):\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Int(7)",
         FAILED, tests=TESTS, detail="not plain data"),
    Case("judge-class-posing-as-a-counter",  # sent as its items, rebuilt as the judge's own Counter
         "class Counter(dict):\n    __module__ = 'collections'\n    def __eq__(self, other):\n        return True\n"
         "def add(a, b):\n    return Counter({7: 1})", FAILED,
         tests="import collections\nassert add(1, 2) == collections.Counter({3: 1})\n", detail="AssertionError"),
    Case("judge-class-posing-as-the-function",  # its instances stay in the program: a handle has no value
         "class add:\n    def __init__(self, a, b):\n        pass\n    def __eq__(self, other):\n        return True",
         FAILED, tests=TESTS, detail="not plain data"),
    Case("judge-patch-a-class-the-tests-use",
         "import collections\ncollections.Counter.__eq__ = lambda self, other: True\n"
         "def add(a, b):\n    return collections.Counter({7: 1})", FAILED,
         tests="import collections\nassert add(1, 2) == collections.Counter({3: 1})\n", detail="AssertionError"),
    Case("judge-patch-modules-found-by-gc",
         WRONG + "import builtins, gc, sys, types\nbuiltins.abs = lambda x: 0\n"
         "for found in gc.get_objects() + list(sys.modules.values()):\n"
         "    if isinstance(found, types.ModuleType) and found.__name__ == 'math':\n"
         "        found.fabs = lambda x: 0.0\n"
         "    if isinstance(found, dict) and 'abs' in found and found is not builtins.__dict__:\n"
         "        found['abs'] = lambda x: 0", FAILED,
         tests="import math\nassert math.fabs(add(1, 2) - 3) < 1e-9\nassert abs(add(1, 2) - 3) == 0\n"),
    Case("judge-tests-out-of-sight",  # the tests, and so the expected answers, never enter the sandbox
         RIGHT + "import os\nassert os.listdir('.') == ['program.py'], os.listdir('.')\n"
         "args = open('/proc/1/cmdline', 'rb').read().split(b'\\0')\n"
         "path = [a.split(b'=', 1)[1] for a in args if a.startswith(b'tests=')][0]\nassert not os.path.exists(path)",
         PASSED, tests=TESTS),
    Case("judge-garbage-on-every-descriptor",
         WRONG + "import os\nfor fd in range(3, 64):\n    try:\n"
         "        os.write(fd, b'\\x06\\x00\\x00\\x00t\\x01\\x00\\x00\\x00T')\n    except OSError:\n        pass",
         FAILED, tests=TESTS),
    Case("judge-exception-in-the-call", "def add(a, b):\n    raise ValueError('no')", FAILED, tests=TESTS,
         detail="add() raised ValueError: no"),
    Case("judge-exit-during-the-call", "import os\ndef add(a, b):\n    os._exit(0)", FAILED, tests=TESTS,
         detail="exit 0 before its last statement ran"),
    Case("judge-sys-exit-during-the-call", "import sys\ndef add(a, b):\n    sys.exit(0)", FAILED, tests=TESTS,
         detail="exit 0 before its last statement ran"),
    Case("judge-huge-answer", "def add(a, b):\n    return 'x' * (20 << 20)", FAILED, tests=TESTS,
         detail="more than the 16 MiB allowed"),
    Case("judge-deep-answer", "def add(a, b):\n    x = []\n    for _ in range(1000):\n        x = [x]\n    return x",
         FAILED, tests=TESTS, detail="nested more than"),
    Case("judge-self-containing-answer", "def add(a, b):\n    x = []\n    x.append(x)\n    return x", FAILED,
         tests=TESTS, detail="nested more than"),
    Case("judge-memory-in-the-call", "def add(a, b):\n    return bytearray(8 * 1024 ** 3)", MEMORY, tests=TESTS,
         detail="MemoryError"),
    Case("judge-loop-in-the-call", "def add(a, b):\n    while True:\n        pass", TIMEOUT, timeout=1.5,
         tests=TESTS, detail="wall-clock limit"),
    Case("judge-objects-of-the-program",  # as MBPP/367: the tests build the program's objects, kept there
         "class Node:\n    def __init__(self, data):\n        self.data, self.left = data, None\n"
         "def depth(node):\n    return 0 if node is None else 1 + depth(node.left)", PASSED,
         tests="root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)\nassert depth(root) == 3\n"
         "assert root.left.data == 2 and depth(root.left) == 2 and depth(None) == 0\n"),
    Case("judge-objects-of-the-program-have-no-value",
         "class Node:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return 7",
         FAILED, tests="assert Node() == add(1, 2)\n", detail="not plain data"),
    Case("judge-standard-containers",
         "import collections\ndef add(a, b):\n    n = a + b\n    return (collections.defaultdict(list, {n: [1]}), "
         "collections.deque([n], 4), collections.OrderedDict(x=n), collections.Counter([n]), {n}, frozenset([n]), "
         "b'x', 1 + 2j, float(n), None, True, -2 ** 70)", PASSED,
         tests="import collections\nd, q, o, c, s, f, b, z, x, n, t, big = add(1, 2)\n"
         "assert d == {3: [1]} and d[9] == [] and q == collections.deque([3]) and q.maxlen == 4\n"
         "assert o == collections.OrderedDict(x=3) and c == collections.Counter({3: 1}) and s == {3}\n"
         "assert f == frozenset([3]) and b == b'x' and z == 1 + 2j and x == 3.0 and n is None and t is True\n"
         "assert big == -2 ** 70 and isinstance(c, collections.Counter)\n"),
]


@pytest.fixture(scope="module")
def runs() -> dict[str, SandboxResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DAAR_SANDBOX", raising=False)
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {c.name: pool.submit(c.run) for c in CASES}
            return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_verdict(case: Case, runs: dict[str, SandboxResult]) -> None:
    result = runs[case.name]
    assert result.mode == "namespace" and len({c.name for c in CASES}) == len(CASES)
    assert result.status in case.expect, (result.status, result.detail, result.stderr[-600:])
    if case.detail:
        assert case.detail in result.detail, (result.detail, result.stderr[-600:])


# ---------------------------------------------------------------- the former limits (docs/SANDBOX.md)

TOKEN_HUNT = r"""
import gc, os, re, sys
hexes = set()
def look(value):
    if isinstance(value, bytes):
        value = value.decode('latin-1')
    if isinstance(value, str) and re.fullmatch('[0-9a-f]{32}', value):
        hexes.add(value)
frame = sys._getframe()
while frame is not None:
    for space in (frame.f_locals, frame.f_globals):
        for value in list(space.values()):
            look(value)
    frame = frame.f_back
for found in gc.get_objects():
    for value in list(found.values() if isinstance(found, dict) else found if isinstance(found, (list, tuple)) else ()):
        look(value)
print('found', len(hexes), flush=True)
for guess in hexes:
    for fd in range(3, 64):
        try:
            os.write(fd, guess.encode())
        except OSError:
            pass
os._exit(0)
"""


def test_the_token_is_out_of_the_programs_reach() -> None:
    """A program run alone holds its token, and a hunt through frames and `gc` finds it and forges
    the end (a verdict no benchmark item gets). With tests, only the launcher ever holds it."""
    alone = run_python(f"{WRONG}{TOKEN_HUNT}{TESTS}")
    assert (alone.status, alone.stdout) == ("passed", "found 1\n"), (alone.stdout, alone.stderr[-500:])
    judged = run_python(f"{WRONG}{TOKEN_HUNT}", tests=TESTS)
    assert (judged.status, judged.stdout) == ("failed", "found 0\n"), (judged.stdout, judged.stderr[-500:])
    assert judged.detail == "exit 0 before its last statement ran"


def test_an_always_equal_answer_fails() -> None:
    code = "class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
    code += "def add(a, b):\n    return Anything()\n"
    result = run_python(code, tests=TESTS)
    assert (result.status, result.detail) == ("failed", "add() returned a 'Anything' object, which is not plain data")
    assert run_python(RIGHT, tests=TESTS).passed


def test_patching_the_tests_modules_through_gc_changes_nothing() -> None:
    """Every module named math the program can find is patched; the tests' math is the launcher's.
    A right answer still passes tests that need the real `fabs`, a wrong one still fails."""
    patch = (
        "import gc, sys, types\nfor found in gc.get_objects() + list(sys.modules.values()):\n"
        "    if isinstance(found, types.ModuleType) and found.__name__ == 'math':\n        found.fabs = lambda x: 0.0\n"
    )
    tests = "import math\nassert math.fabs(add(1, 2) - 5) == 2\nassert math.fabs(add(2, 2) - 4) < 1e-9\n"
    assert run_python(RIGHT + patch, tests=tests).passed
    wrong = run_python(WRONG + patch, tests=tests)
    assert wrong.status == "failed" and "AssertionError" in wrong.detail, wrong.detail
