"""The launcher that `sandbox.run_python` starts: it builds the barrier, then runs the program.

Why a separate script and not `preexec_fn`: the evaluator has torch and tokenizer threads, and
Python code between fork and exec in a threaded parent can deadlock. This script runs as
`python -I -S -B` in a fresh single-threaded interpreter, where forking and kernel calls are safe.
It imports only cheap standard modules (no json, re or enum: start-up time is per item).

Process tree in "namespace" mode (the default):

    launcher (host)  unshare(user, mount, net, ipc, uts; pid for its children); enforces the
      |              wall-clock limit; with tests, runs them (the judge, `_sandbox_judge`)
      init (pid 1)   builds the new root, reaps, relays the program's exit status; when it
        |            ends, the kernel kills whatever is left in the namespace
        program      limits, a new session keyring, every capability dropped, uid 65534, the
                     system call filter, then the program (and its answers to the tests' calls)

The program process is a fork of the launcher that never execs, which saves a second interpreter
start; its code is in `_sandbox_program.py`. In "process" mode (DAAR_SANDBOX=process) the launcher
forks the program directly and only the Python-level guard, the limits, the system call filter and
an empty environment apply.

Verdict: the evaluator passes a token through a pipe. Without tests, the program process reads and
closes it before the program starts (so it is in no file, argument or environment variable) and
writes it to a dedicated descriptor only after the program's module body ran to the end. With tests,
the program never holds it: this launcher reads the token and the tests only after forking, runs the
tests itself (`_sandbox_judge`), asking the program process for each call they make over two pipes,
and writes the token (and how the tests ended) itself.
The report line (exit status or signal, CPU seconds, or a setup error) comes from processes the
program cannot write to: init or the launcher, after the program process ended.
"""

from __future__ import annotations

import _signal
import ctypes
import os
import resource
import select
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
NOBODY = 65534
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "urandom", "random")
INTS = ("memory", "cpu", "fsize", "nproc", "work_mb", "token_fd", "result_fd", "report_fd")


if __name__ == "__main__":  # run by sandbox.py, where `-I` keeps the package off sys.path: the
    # siblings as top-level modules, already loaded from sandbox.py's compiled code (see _BOOT there)
    # or imported from this folder (another interpreter)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _sandbox_judge as JUDGE
    import _sandbox_program as PROGRAM

    del sys.path[0]
else:  # imported from the package (code_version reads the scoring code)
    from daar.evaluate import _sandbox_judge as JUDGE
    from daar.evaluate import _sandbox_program as PROGRAM
SetupError, _check, _prctl, _libc, WORK = PROGRAM.SetupError, PROGRAM.check, PROGRAM.prctl, PROGRAM._libc, PROGRAM.WORK


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    args = [None if s is None else s.encode() for s in (source, target, fstype)]
    _check(_libc.mount(*args, ctypes.c_ulong(flags), None if data is None else data.encode()), f"mount {target}")


def _write_file(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def _parse(argv: list[str]) -> dict:
    cfg: dict = {"binds": []}
    for item in argv:
        key, _, value = item.partition("=")
        if key == "bind":
            cfg["binds"].append(value)
        else:
            cfg[key] = int(value) if key in INTS else float(value) if key == "timeout" else value
    return cfg


# ---------------------------------------------------------------- namespaces and the new root


def _enter_namespaces() -> int:
    """unshare(2) every namespace, map ids, and return the uid the program will run as. Root maps
    0-65535 onto themselves (written by a helper that stays outside: only a process with CAP_SETUID
    there may), so the program can be 65534; where fewer ids exist (root of a user namespace with one
    id) and for other users, the caller's id becomes 0 inside and the program stays 0, capless."""
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(flags), "unshare")
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"0 {uid} 1\n")
        _write_file("/proc/self/gid_map", f"0 {gid} 1\n")
        return 0
    me, (ready_r, ready_w) = os.getpid(), os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        if os.read(ready_r, 1) != b"1":
            os._exit(1)
        for count, code in ((65536, 0), (1, 3)):
            try:
                _write_file(f"/proc/{me}/uid_map", f"0 0 {count}\n")
                _write_file(f"/proc/{me}/gid_map", f"0 0 {count}\n")
                os._exit(code)
            except OSError as error:
                message = f"daar-sandbox-setup: id map: {error}\n"
        os.write(2, message.encode())
        os._exit(1)
    os.close(ready_r)
    failed = _libc.unshare(flags)
    errno = ctypes.get_errno()
    os.write(ready_w, b"0" if failed else b"1")
    os.close(ready_w)
    status = os.waitstatus_to_exitcode(os.waitpid(helper, 0)[1])
    if failed:
        raise SetupError(f"unshare: {os.strerror(errno)} (errno {errno})")
    if status not in (0, 3):
        raise SetupError("writing the user namespace id maps failed")
    return NOBODY if status == 0 else 0


def _locked_flags(path: str) -> int:
    """Flags of a mount that a read-only remount inside a user namespace must keep."""
    f_flag = os.statvfs(path).f_flag
    return (MS_NOSUID * bool(f_flag & os.ST_NOSUID)) | (MS_NODEV * bool(f_flag & os.ST_NODEV)) | (
        MS_NOEXEC * bool(f_flag & os.ST_NOEXEC)
    )


def _bind_readonly(source: str, target: str, devices: bool = False) -> None:
    """Recursive read-only bind of a folder or file; submounts (rare under /usr) are made read-only
    one by one. A read-only mount still lets a program write to a device such as /dev/null."""
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        open(target, "w").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (0 if devices else MS_NODEV)
    for point in [target] + [p for p in points if p.startswith(target + "/")]:
        _mount(None, point, None, flags | _locked_flags(point))


def _build_root(cfg: dict, uid: int) -> None:
    """Empty tmpfs root with read-only system folders, four devices, a /proc of this pid namespace
    and a writable, size-limited /sandbox; pivot into it and make it read-only."""
    root = os.path.join(cfg["dir"], "root")
    os.umask(0o022)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates to the host
    os.makedirs(root, exist_ok=True)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=512,mode=0755")
    _bind_readonly("/usr", root + "/usr")
    for name in SYSTEM_LINKS:  # symlinks into /usr on merged-/usr systems, else real folders
        if os.path.islink(name):
            os.symlink(os.readlink(name), root + name)
        elif os.path.isdir(name):
            _bind_readonly(name, root + name)
    for folder in cfg["binds"]:
        _bind_readonly(folder, root + folder)
    os.makedirs(root + "/etc")
    if os.path.exists("/etc/ld.so.cache"):  # lets the dynamic loader find libraries (ctypes, libffi)
        _bind_readonly("/etc/ld.so.cache", root + "/etc/ld.so.cache")
    os.makedirs(root + "/dev")
    for name in DEVICES:
        _bind_readonly(f"/dev/{name}", f"{root}/dev/{name}", devices=True)
    for index, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{index}", f"{root}/dev/{name}")
    os.symlink("/proc/self/fd", f"{root}/dev/fd")
    os.makedirs(root + "/proc")  # mounted before the pivot: the kernel wants a full /proc visible
    try:
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid")
    except SetupError:  # Linux < 5.8
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + WORK)
    options = f"size={cfg['work_mb']}m,nr_inodes=4096,mode=0700,uid={uid},gid={uid}"
    _mount("tmpfs", root + WORK, "tmpfs", MS_NOSUID | MS_NODEV, options)
    with open(cfg["program"], "rb") as source, open(f"{root}{WORK}/program.py", "wb") as copy:
        copy.write(source.read())  # the tests never enter: they run in the launcher
    os.chown(f"{root}{WORK}/program.py", uid, uid)
    os.chdir(root)
    _check(_libc.syscall(PROGRAM.syscalls()["pivot_root"], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


# ---------------------------------------------------------------- supervision


def _fork() -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    return os.fork()


def _wait_with_deadline(pid: int, seconds: float) -> tuple[int, resource.struct_rusage] | None:
    """Raw wait status and resource usage of `pid`, or None after killing it when `seconds` ran out."""
    handle = os.pidfd_open(pid)
    ready = select.select([handle], [], [], max(0.0, seconds))[0]
    os.close(handle)
    if ready:
        return os.wait4(pid, 0)[1:]
    os.kill(pid, _signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _describe(status: int) -> str:
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _start_program(cfg: dict, close: tuple, namespace: bool, uid: int = 0, last_cap: int = 0) -> tuple[int, int]:
    """Fork the program process; its pid and the read end of its setup channel (see
    _sandbox_program). `close`: what the program must not hold (its parent's report, the judge's ends)."""
    setup_r, setup_w = os.pipe()
    child = _fork()
    if child == 0:
        _close(*close, setup_r)
        PROGRAM.run_program(cfg, setup_w, namespace, uid, last_cap)
    _close(setup_w, *cfg["program_fds"])
    return child, setup_r


def _outcome(setup_r: int, status: int, usage: resource.struct_rusage) -> str:
    """The report line for a program process that ended: its setup error, else how it ended and
    the CPU time it (and the children it waited for) used."""
    failure = os.read(setup_r, 4096).decode(errors="replace")
    os.close(setup_r)
    if failure:
        return f"error {failure}"
    return f"{_describe(status)} cpu {usage.ru_utime + usage.ru_stime:.3f}"


def _init(cfg: dict, status_w: int) -> None:
    """Pid 1 of the new pid namespace: build the root, start the program, reap until it ends."""
    try:
        _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
        uid = cfg["uid"]
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            last_cap = int(handle.read())
        _write_file("/proc/sys/user/max_user_namespaces", "0")  # in this namespace: no nested ones
        _build_root(cfg, uid)
    except (OSError, SetupError, ValueError, KeyError) as error:
        os.write(status_w, f"error {error}".encode())
        os._exit(0)
    child, setup_r = _start_program(cfg, (status_w,), namespace=True, uid=uid, last_cap=last_cap)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # the only signal Python handles by default
    _prctl(PR_SET_DUMPABLE, 0)  # no ptrace or /proc/1/* access, even for the same uid
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == child:
            os.write(status_w, _outcome(setup_r, status, usage).encode())
            os._exit(0)


def _namespaced(cfg: dict) -> str:
    """Launcher side of namespace mode: the report line for the evaluator."""
    try:
        cfg["uid"] = _enter_namespaces()
    except (OSError, SetupError) as error:
        return f"error user namespaces: {error}"  # the evaluator adds its hint on them
    status_r, status_w = os.pipe()
    deadline = time.monotonic() + cfg["timeout"]
    init = _fork()
    if init == 0:
        _close(cfg["report_fd"], status_r, *cfg["judge_fds"])
        _init(cfg, status_w)
    _close(status_w, *cfg["program_fds"])
    waited = _supervise(cfg, init, deadline)
    line = os.read(status_r, 4096).decode(errors="replace")
    if waited is None:
        return "timeout"
    return line or f"error the namespace init ended without a report ({_describe(waited[0])})"


def _process(cfg: dict) -> str:
    deadline = time.monotonic() + cfg["timeout"]
    child, setup_r = _start_program(cfg, (cfg["report_fd"], *cfg["judge_fds"]), namespace=False)
    waited = _supervise(cfg, child, deadline)
    return "timeout" if waited is None else _outcome(setup_r, *waited)


def _supervise(cfg: dict, pid: int, deadline: float) -> tuple[int, resource.struct_rusage] | None:
    """Judge the tests, if any, then wait for `pid` (init or the program): its wait status and
    usage, or None once it was killed at the deadline."""
    if "tests" in cfg and not _judge(cfg, deadline):
        os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return _wait_with_deadline(pid, deadline - time.monotonic())


# ---------------------------------------------------------------- the tests, run here


def _prepare_judge(cfg: dict) -> None:
    """Before any fork: the standard modules the tests use (the program process, a fork, finds them
    loaded: one import serves both), the two pipes, the tests' file opened."""
    modules = {}
    for name in filter(None, cfg.get("modules", "").split(",")):
        try:
            __import__(name)
            modules[name] = sys.modules[name]
        except Exception:  # the tests meet the same error when they import it
            pass
    ask_r, ask_w = os.pipe()
    answer_r, answer_w = os.pipe()
    tests_fd = os.open(cfg["tests"], os.O_RDONLY)  # its path is gone from this root once init pivots
    cfg.update(modules=modules, ask_fd=ask_r, answer_fd=answer_w, judge=(ask_w, answer_r, tests_fd))
    cfg["program_fds"] = (ask_r, answer_w)
    cfg["judge_fds"] = (cfg["token_fd"], cfg["result_fd"], ask_w, answer_r, tests_fd)


def _judge(cfg: dict, deadline: float) -> bool:
    """Run the tests (`_sandbox_judge`) and write the token and how they ended; False if the
    deadline passed. The token and the tests' text are read only now, after the fork, so no process
    of the program ever held them in its memory."""
    _prctl(PR_SET_DUMPABLE, 0)
    ask_w, answer_r, tests_fd = cfg["judge"]
    token = os.read(cfg["token_fd"], 256)
    with os.fdopen(tests_fd, encoding="utf-8") as handle:
        source = handle.read()
    if "random" in sys.modules:  # the program's fork has the same generator state: the tests' inputs
        sys.modules["random"].seed()  # and expected answers must not be predictable from it
    link = JUDGE.Link(ask_w, answer_r)

    def alarm(signum: int, frame: object) -> None:
        link.timed_out = True
        raise JUDGE.Timeout

    _signal.signal(_signal.SIGALRM, alarm)
    try:
        try:
            _signal.setitimer(_signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
            shared = tuple(filter(None, cfg.get("shared", "").split(",")))
            outcome = JUDGE.judge(source, shared, cfg["modules"], link)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except JUDGE.Timeout:
        return False
    _close(cfg["token_fd"], ask_w, answer_r)  # the program reads the end of the calls and exits
    if outcome is not None:  # None: the program ended first, and its exit status decides
        os.write(cfg["result_fd"], token + outcome.encode())
    os.close(cfg["result_fd"])
    return True


def main() -> None:
    cfg = _parse(sys.argv[1:])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if "tests" in cfg:
        _prepare_judge(cfg)
    else:  # the program process alone reads the token and writes it back
        cfg["program_fds"], cfg["judge_fds"] = (cfg["token_fd"], cfg["result_fd"]), ()
    line = _namespaced(cfg) if cfg["mode"] == "namespace" else _process(cfg)
    os.write(cfg["report_fd"], line.encode())
    os._exit(0)  # skip finalization: nothing left to flush


if __name__ == "__main__":
    main()
