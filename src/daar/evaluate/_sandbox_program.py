"""The program process of the sandbox: its last setup steps, then the program (and its answers to the tests).

`_sandbox_launcher.py` imports this file from its folder (it runs as `python -I -S`, without the
package on its path) and forks the program process into `run_program`. See docs/SANDBOX.md for the design.

Why a setup channel: a setup failure must be told apart from a program that prints what setup would
print and exits with the same code. The process reports setup failures on a pipe that it closes
before the program's first statement, so nothing the program does can write to it.

Why the tests are not run here: whatever shares an interpreter with the program can be reached by
it (a token in a frame, modules found through `gc`, an `__eq__` that is always true). With tests, the
launcher runs them (`_sandbox_judge`) and this process only runs the program and answers each call the
tests make with plain data (`_sandbox_wire`); it never holds the token or the tests' text. Without
tests, the program passes by running to its end, which the token shows.
"""

from __future__ import annotations

import atexit
import builtins
import ctypes
import errno
import os
import resource
import struct
import sys
import types

try:  # in the launcher, which has this folder on its path and not the package
    import _sandbox_wire as wire
except ImportError:
    from daar.evaluate import _sandbox_wire as wire

WORK = "/sandbox"
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 4, 24, 28, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 47, 4, 22, 2
SECUREBITS = 0b11101011  # noroot(+locked), setuid fixup and keep-caps locked on, no ambient raise(+locked)
KEYCTL_JOIN_SESSION_KEYRING = 1
# Numbers from each architecture's kernel syscall table; io_uring_* are 425-427 on all of them.
# socketcall multiplexes socket() on ppc64le and s390x, where the filter cannot read its arguments.
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"audit_arch": 0xC000003E, "pivot_root": 155, "socket": 41, "socketpair": 53,
               "add_key": 248, "request_key": 249, "keyctl": 250},
    "aarch64": {"audit_arch": 0xC00000B7, "pivot_root": 41, "socket": 198, "socketpair": 199,
                "add_key": 217, "request_key": 218, "keyctl": 219},
    "riscv64": {"audit_arch": 0xC00000F3, "pivot_root": 41, "socket": 198, "socketpair": 199,
                "add_key": 217, "request_key": 218, "keyctl": 219},
    "ppc64le": {"audit_arch": 0xC0000015, "pivot_root": 203, "socket": 326, "socketpair": 333,
                "socketcall": 102, "add_key": 269, "request_key": 270, "keyctl": 271},
    "s390x": {"audit_arch": 0x80000016, "pivot_root": 217, "socket": 359, "socketpair": 360,
              "socketcall": 102, "add_key": 278, "request_key": 279, "keyctl": 280},
}
REFUSED_CALLS = ("add_key", "request_key", "keyctl", "socketcall")
IO_URING_CALLS = (425, 426, 427)
SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK: what the network namespace isolates
MEMORY_MARK = b"\nMemoryError"

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(RuntimeError):
    """The barrier could not be built; the message names the step."""


def check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(code)} (errno {code})")


def prctl(option: int, arg: int = 0) -> None:
    check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def syscalls() -> dict[str, int]:
    machine = os.uname().machine
    if machine not in SYSCALLS:
        raise SetupError(f"no system call table for {machine} (known: {', '.join(SYSCALLS)})")
    return SYSCALLS[machine]


# ---------------------------------------------------------------- setup of the program process


def _set_limits(cfg: dict, processes: bool) -> None:
    """Hard limits, set while still privileged; without CAP_SYS_RESOURCE they cannot be raised."""
    limits = [(resource.RLIMIT_AS, cfg["memory"]), (resource.RLIMIT_FSIZE, cfg["fsize"]),
              (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 256)]
    if processes:  # RLIMIT_NPROC counts per user: only meaningful for the namespace's own uid
        limits.append((resource.RLIMIT_NPROC, cfg["nproc"]))
    for kind, value in limits:
        resource.setrlimit(kind, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu"], cfg["cpu"] + 1))


def _drop_privileges(uid: int, last_cap: int) -> None:
    """Empty every capability set, lock root's special treatment off, become `uid` where a second id
    is mapped, set no_new_privs; then check with the kernel that nothing is left."""
    prctl(PR_SET_SECUREBITS, SECUREBITS)
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if uid != 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        prctl(PR_SET_DUMPABLE, 1)  # changing uid cleared it; /proc/self/* should stay readable
    check(_libc.capset(struct.pack("Ii", 0x20080522, 0), bytes(24)), "capset")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    with open("/proc/self/status", encoding="ascii") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    caps = [fields[key].strip() for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")]
    if any(int(value, 16) for value in caps) or fields["NoNewPrivs"].strip() != "1":
        raise SetupError(f"capabilities left after dropping them: {caps}")


def _leave_session_keyring(numbers: dict[str, int]) -> None:
    """Join a new, empty session keyring: a user namespace keeps the evaluator's, with its keys.
    ENOSYS (no keyrings in this kernel) and EPERM (a container policy refusing keyctl) leave
    nothing to reach, as the filter below refuses the key calls as well."""
    if _libc.syscall(ctypes.c_long(numbers["keyctl"]), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None) < 0:
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EPERM):
            raise SetupError(f"joining a new session keyring: {os.strerror(code)} (errno {code})")


def seccomp_filter(numbers: dict[str, int], little_endian: bool) -> bytes:
    """A classic-BPF filter: system calls of another ABI (32-bit, x32) fail with ENOSYS; the key
    calls, io_uring (whose operations bypass this filter) and socketcall fail with EPERM; socket
    and socketpair fail with EAFNOSUPPORT unless the family is one the network namespace isolates
    (AF_VSOCK, for one, reaches the hypervisor's services). Everything else is allowed."""
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, fail = 0x7FFF0000, 0x00050000  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | errno

    def refuse(code: int) -> tuple[int, int, int, int]:
        return (ret, 0, 0, fail | code)

    # seccomp_data: int nr at 0, u32 arch at 4, u64 instruction pointer at 8, u64 args[6] from 16
    program = [(ld, 0, 0, 4), (jeq, 1, 0, numbers["audit_arch"]), refuse(errno.ENOSYS), (ld, 0, 0, 0)]
    if numbers["audit_arch"] == SYSCALLS["x86_64"]["audit_arch"]:
        program += [(jge, 0, 1, 0x40000000), refuse(errno.ENOSYS)]  # the x32 ABI shares the arch
    for number in [numbers[name] for name in REFUSED_CALLS if name in numbers] + list(IO_URING_CALLS):
        program += [(jeq, 0, 1, number), refuse(errno.EPERM)]
    count = len(SOCKET_FAMILIES)
    program += [(jeq, 1, 0, numbers["socket"]), (jeq, 0, count + 2, numbers["socketpair"])]
    program.append((ld, 0, 0, 16 if little_endian else 20))  # the low 32 bits of args[0], the family
    program += [(jeq, count - i, 0, family) for i, family in enumerate(SOCKET_FAMILIES)]
    program += [refuse(errno.EAFNOSUPPORT), (ret, 0, 0, allow)]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


def _install_filter(numbers: dict[str, int]) -> None:
    """Needs no_new_privs; the filter is inherited by every child and cannot be removed."""
    code = seccomp_filter(numbers, sys.byteorder == "little")
    buffer = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(code) // 8, ctypes.addressof(buffer))
    check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), 0, 0), "seccomp")


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def run_program(cfg: dict, setup_fd: int, namespace: bool, uid: int = 0, last_cap: int = 0) -> None:
    """The program process; it ends with os._exit (or SystemExit from the program) and never returns.
    Setup failures go to `setup_fd`, which is closed before the program's first statement. With tests
    (`ask_fd` in cfg) it answers the judge's calls and never sees the token or the tests."""
    try:
        numbers = syscalls()
        _set_limits(cfg, processes=namespace)
        os.chdir(WORK if namespace else cfg["work"])
        _leave_session_keyring(numbers)
        if namespace:
            _drop_privileges(uid, last_cap)
        else:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
        token = b""
        if "ask_fd" not in cfg:
            token = os.read(cfg["token_fd"], 256)
            os.close(cfg["token_fd"])
            os.set_inheritable(cfg["result_fd"], False)
        home = os.getcwd()
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"})
        code = _read("program.py")
        import site

        site.setquit()  # exit() and quit() exist as in a normal interpreter (-S skipped site)
        if not namespace:
            guard: dict = {}
            guard_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_guard.py")
            exec(compile(_read(guard_path) or "", guard_path, "exec"), guard)
            guard["install"](home)
        _install_filter(numbers)
    except Exception as error:  # any failure here is the sandbox's, not the program's
        message = str(error) if isinstance(error, SetupError) else f"{type(error).__name__}: {error}"
        os.write(setup_fd, message.encode(errors="replace"))
        os._exit(0)
    os.close(setup_fd)
    path = os.path.join(home, "program.py")
    if "ask_fd" in cfg:
        _serve(code or "", tuple(filter(None, cfg.get("shared", "").split(","))), path, cfg["ask_fd"], cfg["answer_fd"])
    _run(code or "", path, cfg["result_fd"], token)


# ---------------------------------------------------------------- the program, alone or for the judge


def _main(code: str, path: str, memory: object) -> types.ModuleType:
    """Run the program as __main__. If it raises, print the error as Python would (without this
    frame) and exit 1, after calling `memory()` for a MemoryError of this process (not of a fork)."""
    _ME[0] = _getpid()
    module = _ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"], sys.argv = module, ["program.py"]
    try:
        _exec(_compile(code, "program.py", "exec"), module.__dict__)
    except _SystemExit:
        raise  # the interpreter exits with its code; nothing was reported
    except _BaseException as error:
        try:
            if _isinstance(error, _MemoryError) and _getpid() == _ME[0]:
                memory()  # type: ignore[operator]
            _print_error(error)
        finally:
            _exit(1)
    return module


def _print_error(error: BaseException) -> None:
    """Print an error as Python would, less the harness frame it passed through."""
    try:
        trace = error.__traceback__.tb_next if error.__traceback__ is not None else None
        _excepthook(error.__class__, error.with_traceback(trace), trace)
        sys.stderr.flush()
        sys.stdout.flush()
    except _BaseException:  # stdout or stderr closed, deleted or None: nothing to print to
        pass


def _run(code: str, path: str, result_fd: int, token: bytes) -> None:
    """A program without tests: passed if it runs to its last statement, when the token is written.
    Everything used after its first statement is bound before it (below), so rebinding builtins or
    module attributes cannot reach it."""
    _main(code, path, lambda: _write(result_fd, token + MEMORY_MARK))
    if _getpid() == _ME[0]:
        _write(result_fd, token)
    _exit(_shutdown())


def _serve(code: str, shared: tuple[str, ...], path: str, ask_fd: int, answer_fd: int) -> None:
    """A program judged by tests that run elsewhere (`_sandbox_judge`): run it, describe what it
    defined among the names the tests read, then answer each call until the judge closes its end.
    Answers are plain data; objects of the program stay here as numbered handles."""

    def tell(message: tuple) -> None:
        _send(answer_fd, _encode(message))

    module = _main(code, path, lambda: tell(("raise", "MemoryError", "")))
    objects: list = []
    described = {}
    for name in shared:
        if name in module.__dict__:
            described[name] = _describe(module.__dict__[name], objects)
    tell(("ready", described))
    while True:
        request = _receive(ask_fd)
        if request is None:
            break
        answer = _answer(request, objects)
        if _getpid() != _ME[0]:  # a child forked during the call returned here: it has no say
            _exit(0)
        _send(answer_fd, answer)
    _exit(_shutdown())


def _describe(value: object, objects: list) -> tuple:
    """A name the tests read: a plain value, a module (the judge may have its own) or a handle."""
    if _isinstance(value, _ModuleType):
        objects.append(value)
        return ("module", str(_getattr(value, "__name__", "")), len(objects) - 1)
    try:
        _encode(value)
        return ("value", value)
    except _WireError:
        objects.append(value)
        return ("object", len(objects) - 1, _type(value).__name__, _isinstance(value, _type))


def _answer(request: bytes, objects: list) -> bytes:
    """One call, attribute read or write asked by the judge; the program's exceptions are answers."""

    def resolve(kind: str, key: object) -> object:
        return objects[key] if kind == "h" else _getattr(_builtins, key)  # type: ignore[call-overload]

    creates = False
    try:
        operation, number, *rest = _decode(request, resolve)  # type: ignore[misc]
        target = objects[number]
        if operation == "call":
            value, creates = target(*rest[0], **rest[1]), _isinstance(target, _type)
        elif operation == "get":
            value, creates = _getattr(target, rest[0]), True
        else:
            _setattr(target, rest[0], rest[1])
            value = None
        try:
            return _encode(("ok", value))
        except _WireError as error:
            if not creates:
                return _encode(("bad", f"returned {error}"))
            objects.append(value)
            return _encode(("handle", len(objects) - 1, _type(value).__name__))
    except _SystemExit:
        raise  # the interpreter exits with its code, as it would have in the call
    except _BaseException as error:
        _print_error(error)
        return _encode(("raise", _type(error).__name__, _text(error)))


def _text(error: BaseException) -> str:
    try:
        return str(error)[:1000]
    except _BaseException:
        return ""


def _shutdown() -> int:
    """What interpreter shutdown does for the program: wait for its threads, run its atexit hooks
    (Python prints their errors and exits 0), flush stdout and stderr unless they are gone or
    closed (120 if that fails, as in Python). Then the caller _exits, as freeing the heap this fork
    shares with the launcher would cost ~10 ms of copy-on-write faults."""
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
    except _BaseException:  # Python reports it as unraisable and exits as it would have
        pass
    _run_exitfuncs()
    status = 0
    for name in ("stdout", "stderr"):
        stream = _getattr(sys, name, None)
        try:
            if stream is None or _getattr(stream, "closed", False):
                continue
        except _BaseException:  # Python treats a stream whose `closed` fails as open
            pass
        try:
            stream.flush()
        except _BaseException:
            status = 120
    return status


# Bound here, before any program runs: a program can rebind the builtins and module attributes.
_getattr, _isinstance, _BaseException, _run_exitfuncs = getattr, isinstance, BaseException, atexit._run_exitfuncs
_ModuleType, _SystemExit, _MemoryError, _setattr, _type = types.ModuleType, SystemExit, MemoryError, setattr, type
_exec, _compile, _getpid, _write, _exit, _excepthook = exec, compile, os.getpid, os.write, os._exit, sys.excepthook
_builtins, _encode, _decode, _send, _receive = builtins, wire.encode, wire.decode, wire.send, wire.receive
_WireError = wire.WireError
_ME = [0]  # the program process's pid, once known: a fork of it does not report
