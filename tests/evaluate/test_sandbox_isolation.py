"""Kernel interfaces that the sandbox's namespaces do not isolate by themselves (issue 19): the
evaluator's session keyring and AF_VSOCK sockets, refused by a fresh keyring and a system call
filter, and the filter itself on every architecture the launcher knows (most cannot run here).

The corpus in test_sandbox_hostile.py holds the programs that need nothing from the host; the tests
here set up something on the host first (a keyring with a key, a vsock listener).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from daar.evaluate._sandbox_program import SYSCALLS, seccomp_filter
from daar.evaluate.sandbox import barrier_available, run_python

SRC = Path(__file__).resolve().parents[2] / "src"
KEY_CALLS = {"x86_64": (248, 250), "aarch64": (217, 219), "riscv64": (217, 219), "ppc64le": (269, 271),
             "s390x": (278, 280)}
needs_barrier = pytest.mark.skipif(not barrier_available()[0], reason=f"no barrier: {barrier_available()[1]}")

EVALUATOR = r"""
import ctypes, json, os, sys
from daar.evaluate.sandbox import run_python
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
add_key, keyctl = json.loads(sys.argv[3])
if libc.syscall(L(keyctl), L(1), b"daar-evaluator") < 0:  # KEYCTL_JOIN_SESSION_KEYRING, as `keyctl session`
    print(json.dumps({"skip": os.strerror(ctypes.get_errno())}))
    raise SystemExit
secret = sys.argv[1].encode()
assert libc.syscall(L(add_key), b"user", b"daar-secret", secret, L(len(secret)), L(-3)) > 0
result = run_python(sys.argv[2])
seen = libc.syscall(L(keyctl), L(10), L(-3), b"user", b"daar-from-the-program", L(0))  # KEYCTL_SEARCH
print(json.dumps({"status": result.status, "stdout": result.stdout, "stderr": result.stderr, "seen": seen > 0}))
"""
PROGRAM = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
add_key, keyctl = {calls}
key = libc.syscall(L(keyctl), L(10), L(-3), b"user", b"daar-secret", L(0))  # KEYCTL_SEARCH the session keyring
buffer = ctypes.create_string_buffer(256)
size = libc.syscall(L(keyctl), L(11), L(key), buffer, L(256)) if key > 0 else -1  # KEYCTL_READ
print("key", key, "read", buffer.raw[:max(size, 0)], "errno", ctypes.get_errno())
libc.syscall(L(add_key), b"user", b"daar-from-the-program", b"x", L(1), L(-3))
"""


@needs_barrier
def test_evaluator_session_keyring_is_out_of_reach() -> None:
    """An evaluator with a session keyring of its own (`keyctl session`, a PAM login): the program
    neither reads the key in it nor adds one it can see. Run in a child, whose keyring we may change."""
    calls = KEY_CALLS.get(os.uname().machine)
    if calls is None:
        pytest.skip(f"no key system call numbers for {os.uname().machine}")
    secret = "daar-key-" + secrets.token_hex(8)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("DAAR_SANDBOX", None)
    done = subprocess.run(
        [sys.executable, "-c", EVALUATOR, secret, PROGRAM.format(calls=calls), json.dumps(calls)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    if "skip" in seen:
        pytest.skip(f"the kernel offers no session keyring here: {seen['skip']}")
    assert seen["status"] == "passed", seen["stderr"]
    assert secret not in seen["stdout"] and "key -1 read b'' errno 1" in seen["stdout"]
    assert not seen["seen"]


I386_VSOCK = r"""
import ctypes, mmap
# mov eax, 359 (socket in the 32-bit table); mov ebx, 40 (AF_VSOCK); mov ecx, 1; xor edx, edx; int 0x80; ret
code = bytes.fromhex("b867010000" "bb28000000" "b901000000" "31d2" "cd80" "c3")
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))())
"""


@needs_barrier
def test_vsock_is_refused_through_every_abi() -> None:
    """The host listens on a vsock port; the program can neither open an AF_VSOCK socket to reach it
    nor bind the same port, not even through the 32-bit system call ABI of an x86-64 kernel."""
    try:
        host = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    except (AttributeError, OSError) as error:
        pytest.skip(f"no AF_VSOCK on this host: {error}")
    with host:
        host.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
        host.listen(1)
        host.setblocking(False)
        port = host.getsockname()[1]
        program = (
            "import errno, socket\ntry:\n    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n"
            "except OSError as error:\n    print(errno.errorcode[error.errno])\nelse:\n"
            f"    s.bind((socket.VMADDR_CID_ANY, {port}))\n    print('bound')\n"
        )
        result = run_python(program)
        assert result.status == "passed" and result.stdout == "EAFNOSUPPORT\n", (result.stdout, result.stderr)
        if os.uname().machine == "x86_64":
            legacy = run_python(I386_VSOCK)
            # ENOSYS from the filter; a kernel without the 32-bit ABI faults on int 0x80 instead
            assert (legacy.status, legacy.stdout) == ("passed", f"{-errno.ENOSYS}\n") or (
                legacy.detail == "crashed (SIGSEGV)"
            ), (legacy.detail, legacy.stdout, legacy.stderr)
        with pytest.raises(BlockingIOError):
            host.accept()


def _evaluate(code: bytes, nr: int, arch: int, family: int, little_endian: bool) -> int:
    """Run a classic-BPF seccomp filter on one system call (the few instructions it uses)."""
    order = "<" if little_endian else ">"
    data = struct.pack(f"{order}iIQ6Q", nr, arch, 0, family, 0, 0, 0, 0, 0)
    program = [struct.unpack("HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]
    pc, accumulator = 0, 0
    while True:
        op, jt, jf, k = program[pc]
        if op == 0x20:  # load a 32-bit word of seccomp_data
            accumulator = struct.unpack_from(f"{order}I", data, k)[0]
        elif op in (0x15, 0x35):  # jump if equal / greater or equal
            taken = accumulator == k if op == 0x15 else accumulator >= k
            pc += jt if taken else jf
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected instruction {op:#x}")
        pc += 1


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_system_call_filter_on_every_architecture(machine: str) -> None:
    """What the filter answers, per architecture (only x86-64 runs the real filter in these tests):
    foreign ABIs ENOSYS, key calls, io_uring and socketcall EPERM, AF_VSOCK EAFNOSUPPORT."""
    numbers = SYSCALLS[machine]
    little = machine != "s390x"
    code = seccomp_filter(numbers, little)
    allow = 0x7FFF0000

    def answer(nr: int, family: int = 0, arch: int = numbers["audit_arch"]) -> int:
        return _evaluate(code, nr, arch, family, little)

    refused = 0x00050000
    for name in ("socket", "socketpair"):
        assert answer(numbers[name], socket.AF_VSOCK) == refused | errno.EAFNOSUPPORT
        assert answer(numbers[name], 0xDEAD) == refused | errno.EAFNOSUPPORT
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):
            assert answer(numbers[name], family) == allow
    for name in ("add_key", "request_key", "keyctl", "socketcall"):
        if name in numbers:
            assert answer(numbers[name]) == refused | errno.EPERM
    for nr in (425, 426, 427):
        assert answer(nr) == refused | errno.EPERM
    assert answer(0) == answer(numbers["pivot_root"]) == allow
    assert answer(numbers["socket"], socket.AF_VSOCK, arch=0x40000003) == refused | errno.ENOSYS  # i386
    if machine == "x86_64":
        assert answer(0x40000000 | numbers["socket"], socket.AF_VSOCK) == refused | errno.ENOSYS  # x32
