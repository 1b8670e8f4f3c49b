"""Hostile programs against the namespace barrier, each with the verdict it must get and, where it
tries a side effect, the proof that the effect did not happen on the host.

The corpus runs once, in parallel, in a module fixture; the tests below read its results. The
module is skipped only where `barrier_available()` says no (test_eval_sandbox.py asserts that it
is available wherever Linux allows user namespaces, so CI cannot skip this silently). Cases with
`tests` run them as the benchmarks do: in the launcher, each call they make answered by the program
with plain data.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest

from daar.evaluate import sandbox
from daar.evaluate.sandbox import SandboxResult, barrier_available, run_python

pytestmark = pytest.mark.skipif(not barrier_available()[0], reason=f"no barrier: {barrier_available()[1]}")

SRC = Path(__file__).resolve().parents[2] / "src"
WRONG = "def add(a, b):\n    return 7\n"
RIGHT = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"


@dataclass(frozen=True)
class Case:
    name: str
    code: str  # a string.Template: $outside, $victim, $tag, $home, $tcp, $udp, $unix, $marker, $root
    expect: tuple[str, ...]
    timeout: float = 5.0
    mbpp: bool = False  # wrong `add` + this code + the asserts, as an MBPP item
    cpu: int | None = None  # CPU seconds (default: the timeout)
    detail: str = ""  # words the verdict's detail must contain
    tests: str | None = None  # run after the code in their own namespace, as the benchmarks' tests
    shared: tuple[str, ...] | None = None  # what the tests take from the code (None: all they read)

    def program(self, world: dict[str, str]) -> str:
        code = Template(self.code).safe_substitute(world)
        return f"{WRONG}{code}\n{TESTS}" if self.mbpp else code

    def run(self, world: dict[str, str]) -> SandboxResult:
        split = {} if self.tests is None else {"tests": self.tests, "shared": self.shared}
        return run_python(self.program(world), self.timeout, 256, cpu_seconds=self.cpu, **split)


FAILED, TIMEOUT, MEMORY, PASSED = ("failed",), ("timeout",), ("memory",), ("passed",)
FAKE_TOKENS = r"""
import os, re, sys
seen = open(__file__).read() + open('/proc/self/cmdline').read() + open('/proc/1/cmdline', errors='replace').read()
for fd in range(3, 64):
    try:
        seen += os.read(fd, 4096).decode(errors='replace')
    except OSError:
        pass
for guess in set(re.findall(r'[0-9a-f]{32}', seen)) | {'0' * 32, 'passed', 'PASS'}:
    print(guess)
    for fd in range(1, 64):
        try:
            os.write(fd, guess.encode())
        except OSError:
            pass
os._exit(0)
"""
# a system call number per machine, for the programs that call the kernel directly
KEY_CALLS = ("{'x86_64': (248, 249, 250), 'aarch64': (217, 218, 219), 'riscv64': (217, 218, 219), "
             "'ppc64le': (269, 270, 271), 's390x': (278, 279, 280)}[os.uname().machine]")
REFUSED = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
def refused(result, code):
    assert result == -1 and ctypes.get_errno() == code, (result, ctypes.get_errno())
"""
CASES = [
    # -- exit tricks: a wrong solution that leaves before its asserts run
    Case("exit-sys-exit", "import sys\nsys.exit(0)", FAILED, mbpp=True),
    Case("exit-os-exit", "import os\nos._exit(0)", FAILED, mbpp=True),
    Case("exit-quit", "quit()", FAILED, mbpp=True),
    Case("exit-exit", "exit()", FAILED, mbpp=True),
    Case("exit-raise-systemexit", "raise SystemExit(0)", FAILED, mbpp=True),
    Case("exit-atexit-os-exit", "import atexit, os\natexit.register(os._exit, 0)", FAILED, mbpp=True),
    Case("exit-fake-sentinel", FAKE_TOKENS, FAILED, mbpp=True),
    Case("exit-close-and-redirect-stdout",
         "import os, sys\nsys.stdout = sys.stderr = open(os.devnull, 'w')\nos.close(1)\nos.close(2)\nos._exit(0)",
         FAILED, mbpp=True),
    Case("exit-sigalrm-handler",
         "import os, signal, time\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\nsignal.alarm(1)\n"
         "time.sleep(30)", FAILED, mbpp=True),
    Case("exit-ignore-sigterm-and-loop",
         "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
         "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass", TIMEOUT, timeout=1.5, mbpp=True),
    Case("exit-kill-parent-and-init",
         "import os, signal\nfor pid in (os.getppid(), 1, -1):\n    for sig in (signal.SIGINT, signal.SIGKILL):\n"
         "        try:\n            os.kill(pid, sig)\n        except OSError:\n            pass\nos._exit(0)",
         FAILED, mbpp=True),
    Case("exit-override-builtins",
         "import builtins, os, sys\nbuiltins.AssertionError = type('A', (Exception,), {})\n"
         "builtins.SystemExit = type('S', (Exception,), {})\nbuiltins.print = lambda *a, **k: None\n"
         "os._exit = os.write = sys.exit = sys.excepthook = lambda *a: None\nsys.stdout = None",
         FAILED, mbpp=True),
    Case("exit-from-a-thread",
         "import os, threading, time\nthreading.Thread(target=os._exit, args=(0,)).start()\ntime.sleep(5)",
         FAILED, mbpp=True),
    # -- writes outside the working folder, through every API
    Case("write-open", "open('$outside/open.txt', 'w').write('x')", FAILED),
    Case("write-io-fileio", "import io\nio.FileIO('$outside/fileio.txt', 'w').write(b'x')", FAILED),
    Case("write-_io-fileio", "import _io\n_io.FileIO('$outside/_io.txt', 'w').write(b'x')", FAILED),
    Case("write-os-open", "import os\nos.open('$outside/os.txt', os.O_WRONLY | os.O_CREAT)", FAILED),
    Case("write-posix-open", "import posix\nposix.open('$outside/posix.txt', posix.O_WRONLY | posix.O_CREAT)", FAILED),
    Case("write-ctypes-libc-open",
         "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
         "fd = libc.open(b'$outside/ctypes.txt', os.O_WRONLY | os.O_CREAT, 0o644)\n"
         "assert fd >= 0, os.strerror(ctypes.get_errno())", FAILED),
    Case("write-pathlib", "import pathlib\npathlib.Path('$outside/pathlib.txt').write_text('x')", FAILED),
    Case("write-shutil-copy", "import shutil\nshutil.copy('program.py', '$outside/copied.py')", FAILED),
    Case("write-mmap-readonly-file",
         "import mmap, sys\nf = open(sys.executable, 'rb')\nmmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE)",
         FAILED),
    Case("write-remove-victim", "import os\nos.remove('$victim')", FAILED),
    Case("write-truncate-victim", "import os\nos.truncate('$victim', 0)", FAILED),
    Case("write-symlink-in-workdir",
         "import os\nos.symlink('$outside', 'out')\nopen('out/symlinked.txt', 'w').write('x')", FAILED),
    Case("write-hardlink", "import os, sys\nos.link(sys.executable, 'python-link')", FAILED),
    Case("write-tmp", "open('/tmp/$tag', 'w').write('x')", FAILED),
    Case("write-dev-shm", "open('/dev/shm/$tag', 'w').write('x')", FAILED),
    Case("write-parent-home", "open('$home/$tag', 'w').write('x')", FAILED),
    Case("write-cwd-parent", "open('../$tag', 'w').write('x')", FAILED),
    Case("write-system-folders",
         "import sys\nfor path in ('/usr/lib/$tag', sys.base_prefix + '/$tag', '/$tag'):\n"
         "    try:\n        open(path, 'w')\n    except OSError:\n        continue\n    raise SystemExit(3)\n"
         "open(sys.executable, 'ab')", FAILED),
    Case("write-subprocess-shell",
         "import subprocess\n"
         "subprocess.run(['sh', '-c', 'echo x > $outside/shell.txt; echo y > /tmp/$tag-sh'], check=True)", FAILED),
    Case("write-fill-the-disk",
         "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * 1_000_000)\n    i += 1", FAILED),
    # -- privileges
    Case("priv-no-capabilities-left",
         "import os\nstatus = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
         "for key in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'):\n    assert int(status[key], 16) == 0, key\n"
         "assert status['NoNewPrivs'].strip() == '1'\nassert os.getuid() == $uid and os.getgid() == $uid",
         PASSED),
    Case("priv-remount-root-writable",
         "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
         "assert libc.mount(None, b'/', None, 32 | 4096, None) == 0, ctypes.get_errno()", FAILED),
    Case("priv-nested-user-namespace",
         "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
         "assert libc.unshare(0x10000000) == 0, os.strerror(ctypes.get_errno())", FAILED),
    # -- many processes
    Case("fork-os-fork-loop", "import os\nwhile True:\n    os.fork()", FAILED),
    Case("fork-os-fork-ignoring-errors",
         "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", TIMEOUT, timeout=2),
    Case("fork-ctypes-fork-loop", "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()",
         TIMEOUT, timeout=2),
    Case("fork-subprocess-loop",
         "import subprocess, sys\nwhile True:\n"
         "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '$marker'])", FAILED),
    Case("fork-multiprocessing",
         "import multiprocessing, time\nfor _ in range(50):\n"
         "    multiprocessing.Process(target=time.sleep, args=(60,)).start()", FAILED),
    Case("fork-many-threads",
         "import threading, time\nfor _ in range(100):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
         FAILED),
    Case("fork-detached-survivor",  # it ends cleanly (a pass), but its detached child must not survive
         "import subprocess, sys\n"
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '$marker'], start_new_session=True)",
         PASSED),
    # -- secrets and other processes
    Case("env-read-everything",
         "import glob, os\nprint(dict(os.environ))\nfor path in ['/proc/self/environ', '/proc/1/environ',\n"
         "        f'/proc/{os.getppid()}/environ', *glob.glob('/proc/*/environ'), *glob.glob('/proc/*/cmdline')]:\n"
         "    try:\n        print(path, open(path, 'rb').read())\n    except OSError as error:\n"
         "        print(path, error)\nassert {p for p in os.listdir('/proc') if p.isdigit()} == {'1', '2'}",
         PASSED),
    Case("env-host-files-invisible",
         "import os\ncmd = open('/proc/1/cmdline', 'rb').read().split(b'\\0')\n"
         "private = [a.split(b'=', 1)[1] for a in cmd if a.startswith(b'dir=')][0].decode()\n"
         "for path in (private, private + '/program.py', '/etc/passwd', '$outside', '$home/.bashrc', '/work'):\n"
         "    assert not os.path.exists(path), path", PASSED),
    # -- network
    Case("net-tcp-loopback", "import socket\nsocket.create_connection(('127.0.0.1', $tcp), timeout=2)", FAILED),
    Case("net-udp-loopback",
         "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('127.0.0.1', $udp))",
         FAILED),
    Case("net-abstract-unix",
         "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0$unix')\ns.sendall(b'x')", FAILED),
    Case("net-public-ip", "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)", FAILED),
    # -- memory and time
    Case("mem-one-huge-block", "x = bytearray(8 * 1024 ** 3)", MEMORY, detail="MemoryError"),
    Case("mem-growing-list", "blocks = []\nwhile True:\n    blocks.append(bytearray(10 ** 7))", MEMORY,
         detail="MemoryError (limit 256 MiB"),
    Case("mem-string-repeat", "s = 'x' * 10 ** 11", MEMORY, detail="MemoryError"),
    Case("time-infinite-loop", "while True:\n    pass", TIMEOUT, timeout=1.5, detail="wall-clock limit"),
    Case("time-sleep", "import time\ntime.sleep(60)", TIMEOUT, timeout=1.5, detail="wall-clock limit"),
    # -- verdicts the program cannot forge (issue 19, items 4 and 5)
    Case("verdict-self-sigkill", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", FAILED,
         detail="killed by signal SIGKILL"),
    Case("verdict-self-sigxcpu", "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)", FAILED,
         detail="killed by signal SIGXCPU"),
    Case("verdict-self-sigsegv", "import ctypes\nctypes.string_at(0)", FAILED, detail="crashed (SIGSEGV)"),
    Case("verdict-fake-setup-error",
         "import os\nos.write(2, b'daar-sandbox-setup: unshare: No space left on device\\n')\nos._exit(125)",
         FAILED, detail="exit 125"),
    Case("verdict-fake-memory-error", "import sys\nprint('MemoryError', file=sys.stderr)\nsys.exit(1)", FAILED,
         detail="exit 1"),
    Case("verdict-correct-prints-memoryerror", RIGHT + "import sys\nprint('MemoryError', file=sys.stderr)\n" + TESTS,
         PASSED),
    Case("verdict-correct-closes-stdout", RIGHT + "import sys\nsys.stdout.close()\n" + TESTS, PASSED),
    Case("verdict-correct-stdout-none", RIGHT + "import sys\nsys.stdout = None\n" + TESTS, PASSED),
    Case("verdict-correct-deletes-stdout", RIGHT + "import sys\ndel sys.stdout\n" + TESTS, PASSED),
    Case("verdict-correct-deletes-import", RIGHT + "import builtins\ndel builtins.__import__\n" + TESTS, PASSED),
    Case("verdict-cpu-limit", "while True:\n    pass", TIMEOUT, timeout=10, cpu=1, detail="CPU limit of 1 s"),
    # -- a wrong answer that changes what the tests use (item 3)
    Case("patch-module-the-tests-use", WRONG + "import math\nmath.fabs = lambda x: 0.0", FAILED,
         tests="import math\nassert math.fabs(add(1, 2) - 3) < 1e-9\n"),
    Case("patch-module-during-the-call",  # as HumanEval/32's check: the answer first, then math.fabs
         "def add(a, b):\n    import math\n    math.fabs = lambda x: 0.0\n    return 7", FAILED,
         tests="import math\nfound = add(1, 2)\nassert math.fabs(found - 3) < 1e-9\n"),
    Case("patch-module-imported-by-the-code", WRONG + "import math\nmath.isclose = lambda *a, **k: True", FAILED,
         tests="assert math.isclose(add(1, 2), 3)\n"),
    Case("patch-builtins-the-tests-use", WRONG + "import builtins\nbuiltins.abs = lambda x: 0", FAILED,
         tests="assert abs(add(1, 2) - 3) == 0\n"),
    Case("patch-shadow-a-builtin", WRONG + "def abs(x):\n    return 0", FAILED,
         tests="assert abs(add(1, 2) - 3) == 0\n", shared=("add",)),
    Case("patch-sys-modules-entry",
         WRONG + "import sys, types\nfake = types.ModuleType('math')\nfake.fabs = lambda x: 0.0\n"
         "sys.modules['math'] = fake", FAILED, tests="import math\nassert math.fabs(add(1, 2) - 3) < 1e-9\n"),
    Case("patch-free-code-keeps-its-modules",
         "import collections\ndef add(a, b):\n    return collections.Counter({a + b: 1})", PASSED,
         tests="assert add(1, 2) == collections.Counter({3: 1})\nassert isinstance(add(2, 2), collections.Counter)\n"),
    # -- kernel interfaces a network namespace does not isolate (items 1 and 2)
    Case("kernel-keyring-calls-refused",
         REFUSED + f"add_key, request_key, keyctl = {KEY_CALLS}\n"
         "refused(libc.syscall(L(keyctl), L(0), L(-3), L(0)), errno.EPERM)\n"  # KEYCTL_GET_KEYRING_ID, session
         "refused(libc.syscall(L(add_key), b'user', b'planted', b'x', L(1), L(-3)), errno.EPERM)\n"
         "refused(libc.syscall(L(request_key), b'user', b'daar', None, L(0)), errno.EPERM)", PASSED),
    Case("kernel-vsock-refused",  # the AF_VSOCK family: 40
         REFUSED + "for kind in (1, 2, 5):\n    refused(libc.socket(40, kind, 0), errno.EAFNOSUPPORT)\n"
         "import socket\ntry:\n    socket.socket(40, socket.SOCK_STREAM)\nexcept OSError as error:\n"
         "    assert error.errno == errno.EAFNOSUPPORT, error\nelse:\n    raise AssertionError('vsock socket')",
         PASSED),
    Case("kernel-io-uring-refused",  # io_uring's operations (IORING_OP_SOCKET) would bypass the filter
         REFUSED + "refused(libc.syscall(L(425), L(4), ctypes.create_string_buffer(120)), errno.EPERM)", PASSED),
    Case("kernel-unix-and-ip-sockets-work",
         "import socket\na, b = socket.socketpair()\na.sendall(b'x')\nassert b.recv(1) == b'x'\n"
         "socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()", PASSED),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Host-side state the corpus targets, and listeners that must receive nothing."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "victim.txt").write_text("original")
    tcp, udp, unix = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_UNIX)
    tag = "daar-hostile-" + secrets.token_hex(4)
    for sock, address in ((tcp, ("127.0.0.1", 0)), (udp, ("127.0.0.1", 0)), (unix, "\0" + tag)):
        sock.bind(address)
        sock.setblocking(False)
    tcp.listen(8)
    unix.listen(8)
    values = {
        "outside": str(outside), "victim": str(outside / "victim.txt"), "tag": tag, "home": str(Path.home()),
        "tcp": str(tcp.getsockname()[1]), "udp": str(udp.getsockname()[1]), "unix": tag,
        "marker": "daar-marker-" + secrets.token_hex(4), "uid": "65534" if os.geteuid() == 0 else "0",
        "secret": "s3cret-" + secrets.token_hex(8),
    }
    yield values, (tcp, udp, unix)
    for sock in (tcp, udp, unix):
        sock.close()


@pytest.fixture(scope="module")
def runs(world) -> dict[str, SandboxResult]:
    values, _ = world
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAAR_HOSTILE_SECRET", values["secret"])
        patch.delenv("DAAR_SANDBOX", raising=False)
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {c.name: pool.submit(c.run, values) for c in CASES}
            return {name: future.result() for name, future in futures.items()}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_verdict(case: Case, runs: dict[str, SandboxResult]) -> None:
    result = runs[case.name]
    assert result.mode == "namespace"
    assert result.status in case.expect, (result.status, result.returncode, result.stderr[-600:])
    if case.detail:
        assert case.detail in result.detail, (result.detail, result.stderr[-600:])


def test_no_write_reached_the_host(world, runs) -> None:
    values, _ = world
    outside = Path(values["outside"])
    assert [p.name for p in outside.iterdir()] == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "original"
    tag = values["tag"]
    for folder in ("/tmp", "/dev/shm", values["home"], "/usr/lib", sys.base_prefix, "/"):
        assert not list(Path(folder).glob(tag + "*")), folder


def test_parent_secret_never_seen(world, runs) -> None:
    secret = world[0]["secret"]
    assert "DAAR_HOSTILE_SECRET" not in runs["env-read-everything"].stdout
    for name, result in runs.items():
        assert secret not in result.stdout and secret not in result.stderr, name


def test_listeners_received_nothing(world, runs) -> None:
    tcp, udp, unix = world[1]
    for attempt in (tcp.accept, lambda: udp.recvfrom(16), unix.accept):
        with pytest.raises(BlockingIOError):
            attempt()


def test_no_sandbox_process_survives(world, runs) -> None:
    marker, launcher = world[0]["marker"].encode(), str(sandbox._LAUNCHER).encode()
    left = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline or launcher in cmdline:
            left.append((entry.name, cmdline[:120]))
    assert not left


def test_machine_responsive_after_the_bombs(runs) -> None:
    start = time.perf_counter()
    assert run_python("print(1)").passed
    assert time.perf_counter() - start < 5


def test_non_root_evaluator_path(tmp_path: Path) -> None:
    """An evaluator that is not root maps itself to uid 0 inside and drops every capability.
    Emulated from root with an outer user namespace where we are uid 1000."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to emulate a non-root evaluator (non-root runs use that path anyway)")
    programs = [
        Case("caps", next(c.code for c in CASES if c.name == "priv-no-capabilities-left"), PASSED),
        Case("exit", "import sys\nsys.exit(0)", FAILED, mbpp=True),
        Case("write", f"open('{tmp_path}/nonroot.txt', 'w').write('x')", FAILED),
        Case("tmp", "open('/tmp/$tag', 'w').write('x')", FAILED),
    ]
    values = {"uid": "0", "tag": "daar-nonroot-" + secrets.token_hex(4)}
    always_equal = "class Anything:\n    def __eq__(self, other):\n        return True\n"
    always_equal += "def add(a, b):\n    return Anything()"
    judged = [(RIGHT, TESTS, "passed"), (WRONG, TESTS, "failed"), (always_equal, TESTS, "failed")]
    script = (
        "import json, os, sys\nfrom daar.evaluate.sandbox import run_python\nassert os.geteuid() == 1000\n"
        "alone = [run_python(p).status for p in json.loads(sys.argv[1])]\n"
        "print(json.dumps(alone + [run_python(c, tests=t).status for c, t in json.loads(sys.argv[2])]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("DAAR_SANDBOX", None)
    done = subprocess.run(
        ["unshare", "--user", "--map-user=1000", "--map-group=1000", sys.executable, "-c", script,
         json.dumps([p.program(values) for p in programs]), json.dumps([j[:2] for j in judged])],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [p.expect[0] for p in programs] + [j[2] for j in judged]
    assert not list(tmp_path.iterdir()) and not Path("/tmp", values["tag"]).exists()
