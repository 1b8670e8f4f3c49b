"""The judge: a benchmark's tests run in the launcher, a process the program never runs in.

Why: a program that shares an interpreter with its tests can always reach them (find the pass token
in a frame, patch the tests' modules through `gc`, return an object whose `__eq__` is always true).
So the tests run here, with this process's own modules and builtins, and every name they take from
the program is a `Handle`: calling it sends the arguments to the program process, which calls its
function and sends back plain data (`_sandbox_wire`), decoded into objects of the judge. A result
that is not plain data fails the item, with the reason. Objects of the program's own classes (MBPP's
`Node`) stay there: the tests get handles they can call, pass back, read and set attributes on, but
never compare, hash or test for truth. Only this process holds the token and the result descriptor.

The launcher imports this file as a top-level module (its folder is on its path, the package is not).
"""

from __future__ import annotations

import builtins
import sys

try:  # in the launcher, which has this folder on its path and not the package
    import _sandbox_wire as wire
except ImportError:
    from daar.evaluate import _sandbox_wire as wire

MEMORY = "\nMemoryError"  # written after the token: the program ended the tests with a MemoryError
FAILED = "\nfailed "  # written after the token, then the reason: the judge saw the tests fail
# Raised as ProgramError instead: a StopIteration out of a call would end a test's `map(add, ...)` early,
# and `all()` of nothing is true.
_NOT_RAISED = (SystemExit, KeyboardInterrupt, GeneratorExit, StopIteration, StopAsyncIteration)


class Rejected(BaseException):
    """Something the tests cannot use came back (not plain data, a malformed message) or the tests
    used a handle's value. The item fails with this reason even if a test catches it."""


class Ended(BaseException):
    """The program process closed its end or ended before it answered: its exit status decides."""


class Timeout(BaseException):
    """Raised by the launcher's alarm when the wall-clock limit passed while the judge ran."""


class ProgramError(Exception):
    """An exception the program raised whose class is not a builtin one, or not one to raise as itself
    here (see _NOT_RAISED): "Type: message"."""


class Link:
    """The judge's ends of the two pipes, and what went wrong on them, kept even if a test catches it."""

    def __init__(self, ask_fd: int, answer_fd: int) -> None:
        self.ask_fd, self.answer_fd = ask_fd, answer_fd
        self.failure: str | None = None
        self.ended = self.timed_out = False
        self.raised: tuple[BaseException, str] | None = None  # the last exception the program raised

    def reject(self, reason: str) -> None:
        reason = " ".join(str(reason).split())[:300]
        self.failure = self.failure or reason
        raise Rejected(reason)

    def receive(self, what: str) -> object:
        try:
            data = wire.receive(self.answer_fd)
            if data is not None:
                return wire.decode(data)
        except wire.WireError as error:
            self.reject(f"{what}: {error}")
        self.ended = True
        raise Ended(what)

    def exchange(self, request: tuple, what: str, objects: bool) -> object:
        """Send a request, return its answer: plain data, or a handle where `objects` (a class was
        called, an attribute read)."""
        try:
            payload = wire.encode(request, _reference)
        except wire.WireError as error:
            raise TypeError(f"the tests passed {error} to {what}, which cannot be sent to the program") from None
        try:
            wire.send(self.ask_fd, payload)
        except BrokenPipeError:
            self.ended = True
            raise Ended(what) from None
        return self.answer(self.receive(what), what, objects)

    def answer(self, reply: object, what: str, objects: bool) -> object:
        kind = reply[0] if type(reply) is tuple and reply else None
        if kind == "ok" and len(reply) == 2:  # type: ignore[arg-type]
            return reply[1]  # type: ignore[index]
        if kind == "handle" and _shaped(reply, int, str):
            if objects:
                return Handle(self, reply[1], reply[2], False)  # type: ignore[index]
            self.reject(f"{what} returned a {reply[2]!r} object, which is not plain data")  # type: ignore[index]
        if kind == "raise" and _shaped(reply, str, str):
            raise self.exception(reply[1], reply[2], what)  # type: ignore[index]
        if kind == "bad" and _shaped(reply, str):
            self.reject(f"{what} {reply[1]}")  # type: ignore[index]
        self.reject(f"{what}: a malformed answer")
        raise AssertionError("unreachable")

    def exception(self, name: str, message: str, what: str) -> BaseException:
        """The judge's own exception for one the program raised: a builtin class by name (so tests
        that expect a ValueError see one), else ProgramError."""
        found = getattr(builtins, name, None) if name.isidentifier() else None
        error: BaseException = ProgramError(f"{name}: {message}")
        if isinstance(found, type) and issubclass(found, BaseException) and not issubclass(found, _NOT_RAISED):
            try:
                error = found(message)
            except Exception:  # a class that needs other arguments (UnicodeDecodeError)
                pass
        self.raised = (error, f"{what} raised {name}" + (f": {message}" if message else ""))
        return error

    def bindings(self, shared: tuple[str, ...], modules: dict[str, object]) -> dict[str, object]:
        """What the tests get for the names the program defined among `shared`: plain values, the
        judge's own copy of a module it imported for the tests, or handles."""
        reply = self.receive("the program")
        if type(reply) is tuple and reply[:1] == ("raise",) and _shaped(reply, str, str):
            raise self.exception(reply[1], reply[2], "the program")  # its module body ended with a MemoryError
        if not (type(reply) is tuple and len(reply) == 2 and reply[0] == "ready" and type(reply[1]) is dict):
            self.reject("the program: a malformed first message")
        found: dict[str, object] = {}
        for name, item in reply[1].items():  # type: ignore[index]
            if name not in shared or name.startswith("__") or type(item) is not tuple or not item:
                self.reject(f"the program: an unexpected name {name!r}")
            if item[0] == "value" and len(item) == 2:
                found[name] = item[1]
            elif item[0] == "module" and _shaped(item, str, int):
                found[name] = modules.get(item[1]) or Handle(self, item[2], name, False)
            elif item[0] == "object" and _shaped(item, int, str, bool):
                found[name] = Handle(self, item[1], name, item[3])
            else:
                self.reject(f"the program: a malformed description of {name!r}")
        return found


def _shaped(message: tuple, *kinds: type) -> bool:
    return len(message) == len(kinds) + 1 and all(type(v) is k for v, k in zip(message[1:], kinds, strict=True))


def _reference(value: object) -> object:
    """How the judge sends what is not plain data: its handles by number, builtins by name."""
    if type(value) is Handle:
        return object.__getattribute__(value, "_number")
    name = getattr(value, "__name__", None)
    return name if isinstance(name, str) and getattr(builtins, name, None) is value else None


class Handle:
    """An object of the program, known by number. Calls, attribute reads and writes go to the program;
    its value never comes here, so comparing, hashing, truth or iteration fail the item."""

    __slots__ = ("_link", "_number", "_kind", "_creates")

    def __init__(self, link: Link, number: int, kind: str, creates: bool) -> None:
        for name, value in (("_link", link), ("_number", number), ("_kind", kind), ("_creates", creates)):
            object.__setattr__(self, name, value)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._link.exchange(("call", self._number, args, kwargs), f"{self._kind}()", self._creates)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):  # protocol probes (copy, pickle, ...) are not the program's business
            raise AttributeError(name)
        return self._link.exchange(("get", self._number, name), f"{self._kind}.{name}", True)

    def __setattr__(self, name: str, value: object) -> None:
        self._link.exchange(("set", self._number, name, value), f"{self._kind}.{name} = ...", False)

    def __repr__(self) -> str:
        return f"<{self._kind!r} object of the program>"

    def _refuse(self, *args: object) -> object:
        self._link.reject(f"the tests used the value of a {self._kind!r} object of the program (not plain data)")
        return NotImplemented

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __hash__ = _refuse  # type: ignore[assignment]
    __len__ = __iter__ = __contains__ = __index__ = __int__ = __float__ = __add__ = __radd__ = _refuse  # type: ignore[assignment]
    __sub__ = __rsub__ = __mul__ = __rmul__ = __getitem__ = _refuse  # type: ignore[assignment]


def judge(source: str, shared: tuple[str, ...], modules: dict[str, object], link: Link) -> str | None:
    """Run the tests on the program's answers. Returns what follows the token in the result: "" for
    a pass, MEMORY, FAILED and the reason, or None when the program ended first (init's report of
    how it ended decides). Raises Timeout when the launcher's alarm fired."""
    space: dict[str, object] = {"__name__": "__main__", "__builtins__": builtins}
    error: BaseException | None = None
    try:
        space.update(link.bindings(shared, modules))
        exec(compile(source, "tests.py", "exec"), space)
    except Timeout:
        raise
    except BaseException as caught:  # the tests' own failure, or a reply they could not use
        error = caught
    if link.timed_out:  # a test that caught the alarm does not outlive it
        raise Timeout
    if link.ended:
        return None
    if link.failure is not None:
        _note(f"[sandbox] {link.failure}")
        return FAILED + link.failure
    if error is None:
        return ""
    raised = link.raised if link.raised is not None and link.raised[0] is error else None
    if isinstance(error, MemoryError) and raised is not None:
        return MEMORY
    line = _print_traceback(error)
    reason = raised[1] if raised is not None else f"{type(error).__name__}" + (f": {error}" if str(error) else "")
    return FAILED + " ".join(f"the tests failed ({reason}) at line {line}".split())[:300]


def _print_traceback(error: BaseException) -> int:
    """Print the error as Python would, with the frames of the tests only; return the tests' line."""
    first, last, at = None, None, error.__traceback__
    while at is not None:
        if at.tb_frame.f_code.co_filename == "tests.py":
            first, last = first or at, at
        at = at.tb_next
    if last is not None:
        last.tb_next = None
    sys.excepthook(type(error), error.with_traceback(first), first)
    sys.stderr.flush()
    return last.tb_lineno if last is not None else 0


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
