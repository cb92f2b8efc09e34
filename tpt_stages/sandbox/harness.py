"""The trusted harness: verifies a stream of programs inside the sandbox, one process per test.

Run as `python -I -S -m tpt_stages.sandbox.harness --limits JSON` (backends.harness_command starts it so
inside runsc or bwrap).
It prints `{"ready": true, "uid_drop": bool}` once set up, then reads jobs from stdin, one JSON object per
line (`{"program": str, "tests": [[input, expected], ...], "timeout": seconds, "every_test": bool}`), and
answers each with one
JSON line on stdout (`{"verdict", "tests_passed", "tests_total", "seconds", "slowest_test_seconds", "detail",
"stdout_tail"}`).
Results travel only on the harness's own stdout; a program's stdout and stderr are separate pipes that the
harness reads, caps and judges in its own memory, so printing a fake result line is just a wrong answer.

Each test runs in a child of the zygote (zygote.py) in its own session, under rlimits, in a fresh empty
directory, with a cleared environment and, when the harness is root, as a fresh unprivileged uid per program
(root inside runsc or bwrap could read the host's /etc/shadow, and a shared uid could signal or trace the
harness). After each test every process the program left is killed (procs.py) and its directory removed.
The harness itself is a child subreaper (`--namespaces`: each program is PID 1 of a pid namespace of its own
instead, namespaces.py), undumpable, and zeroes the environment it was started with. With `--root` (the
`userns` backend) each program is chroot'ed into that tree and runs in the harness's slot there, emptied after
each test, instead of a fresh directory (program_root.py).

Policy: a program stops at its first failed test, since the verdict is then known: `correct` when every test
passes, else that of the first test that failed. Most wrong programs fail the first test, so this is what makes
verification cheap (each test is a fork, ~20 ms under gVisor). A job with `every_test` runs on past failures,
so that `tests_passed` counts every test the program passes (soft-positive pruning needs that count), except
that it too stops at its first timeout (each further one would cost a full time limit) or when its tests
together have used `BUDGET_FACTOR` time limits.

Stdlib-only, and it must not import the rest of tpt_stages: it runs inside the sandbox.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass

from tpt_stages.sandbox import program_root
from tpt_stages.sandbox.compare import outputs_match
from tpt_stages.sandbox.procs import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, kill_leftovers, prctl
from tpt_stages.sandbox.zygote import MEMORY_ERROR_EXIT, READY, Zygote

BUDGET_FACTOR = 10
# Time for the zygote to fork and the child to set up before the program's clock starts.
SETUP_SECONDS = 10.0
# After the program exits, how long its pipes may take to reach EOF once its leftovers are killed.
DRAIN_SECONDS = 2.0
TAIL_CHARS = 512
STDERR_KEEP = 4096
PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# Uids for programs: fresh per program, random per harness, so that harnesses running side by side on one
# kernel (bwrap shares the host's uids) never share a uid, its RLIMIT_NPROC count or its files.
UID_RANGE = (1 << 20, 1 << 31)
MS_NOSUID, MS_NODEV = 2, 4


@dataclass
class Run:
    """What one test run produced."""

    stdout: bytes = b""
    stderr: bytes = b""
    status: int | None = None  # wait status, None if the program was not reaped
    cpu: float = 0.0
    seconds: float = 0.0
    ready: bool = False  # the child finished setup and the program started
    killed_for: str | None = None  # "timeout" or "output_limit" when the harness killed it
    infra: str | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limits", required=True, help="JSON object, the fields of sandbox.Limits")
    parser.add_argument("--tmpfs", action="append", default=[], help="mount a root-owned tmpfs here first (root only)")
    parser.add_argument(
        "--namespaces", action="store_true", help="keep programs in namespaces of their own (namespaces.py; not root)"
    )
    parser.add_argument("--root", help="chroot programs into this tree, each into a slot of its (program_root.py)")
    args = parser.parse_args(argv)
    limits = json.loads(args.limits)
    _scrub_environment()
    if not args.namespaces:  # else each program is PID 1 of a pid namespace, its orphans' reaper (namespaces.py)
        prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of programs come back to us (procs.py)
    prctl(PR_SET_DUMPABLE, 0)  # no same-uid process may trace us or read /proc/<us>/{mem,environ,fd}
    for path in args.tmpfs:
        _mount_tmpfs(path, limits["memory_mb"])
    zygote = Zygote(PROGRAM_ENV, args.namespaces)  # before any job is read: see zygote.py
    root = os.geteuid() == 0
    uid_base = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0] - (1 << 20)) if root else None
    if args.root:
        base = None
        slot = _claim_slot(args.root)
    else:
        base = tempfile.mkdtemp(prefix="tpt-sandbox-", dir="/tmp")
        os.chmod(base, 0o711)  # programs may enter their own directory, not list the others
    _emit({"ready": True, "uid_drop": root})
    for index, line in enumerate(sys.stdin):
        job = json.loads(line)
        uid = None if uid_base is None else uid_base + index
        place = (args.root, slot) if base is None else (None, os.path.join(base, str(index)))
        _emit(run_program(zygote, job, limits, uid, place))
    if base is not None:
        os.rmdir(base)  # every program's directory is gone already; on the host (`unsafe`) leave nothing
    return 0


def _claim_slot(root: str) -> str:
    """A slot of the tree at `root` (a directory of its WORK, an emptyDir of the pod's) that no other harness
    holds, locked for our lifetime and emptied. Each program of ours runs in it (as its root-owned, read-only
    parent keeps programs from writing beside it) and we empty it after each test; the slot is not made per
    program, because the harness cannot create a directory that a program of its own uid could not chmod."""
    work = os.path.join(root, program_root.WORK.strip("/"))
    for name in sorted(os.listdir(work)):
        path = os.path.join(work, name)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _empty(path)  # a harness before us may have died in the middle of a test
        return path  # fd stays open: the lock lasts as long as we do
    raise OSError(f"no free slot for programs in {work} (the pod mounts one emptyDir per harness there)")


def run_program(zygote: Zygote, job: dict, limits: dict, uid: int | None, place: tuple[str | None, str]) -> dict:
    """`place`: (None, the path of a fresh directory for each test, less a suffix) or (the root to chroot
    into, the slot that every test of it runs in)."""
    root, workdir = place
    tests = job["tests"]
    timeout = float(job["timeout"])
    source = job["program"].encode("utf-8", errors="surrogateescape")
    passed, times = 0, []  # times: seconds per test run
    failure: tuple[str, int, Run, str] | None = None  # (verdict, test index, run, detail)
    last: Run | None = None
    for i, (stdin, expected) in enumerate(tests):
        if sum(times) >= BUDGET_FACTOR * timeout:
            failure = failure or ("timeout", i, Run(), f"time budget of {BUDGET_FACTOR} time limits used up")
            break
        run = run_test(
            zygote, source, stdin.encode(), limits, timeout, uid, (root, workdir if root else f"{workdir}-{i}")
        )
        times.append(run.seconds)
        last = run
        verdict, detail = judge(run, expected, limits, timeout)
        if verdict == "correct":
            passed += 1
        elif failure is None or verdict == "infra_error":
            failure = (verdict, i, run, detail)
        if verdict in ("timeout", "infra_error") or (verdict != "correct" and not job.get("every_test", True)):
            break
    if failure is None:
        return _result("correct", passed, len(tests), times, None, last)
    verdict, i, run, detail = failure
    return _result(verdict, passed, len(tests), times, f"test {i + 1}/{len(tests)}: {detail}", run)


def _result(verdict: str, passed: int, total: int, times: list[float], detail: str | None, run: Run | None) -> dict:
    tail = run.stdout[-TAIL_CHARS:].decode(errors="replace") if run else ""
    return {
        "verdict": verdict,
        "tests_passed": passed,
        "tests_total": total,
        "seconds": round(sum(times), 4),
        "slowest_test_seconds": round(max(times, default=0.0), 4),
        "detail": detail,
        "stdout_tail": tail,
    }


def judge(run: Run, expected: str, limits: dict, timeout: float) -> tuple[str, str]:
    """(verdict, detail) for one test."""
    stderr = run.stderr[-TAIL_CHARS:].decode(errors="replace")
    if run.infra or not run.ready:
        return "infra_error", f"{run.infra or 'setup failed'}: {stderr}"
    if run.killed_for == "timeout":
        return "timeout", f"no exit within {timeout:g} s"
    if run.killed_for == "output_limit":
        return "output_limit", f"more than {limits['max_output_bytes']} bytes of output"
    status = run.status
    assert status is not None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and run.cpu >= _cpu_limit(timeout)[0]):
            return "timeout", f"CPU time limit ({run.cpu:.2f} s)"
        if sig == signal.SIGXFSZ:
            return "output_limit", f"a file over {limits['max_file_bytes']} bytes"
        return "runtime_error", f"killed by {signal.Signals(sig).name}: {stderr}"
    code = os.WEXITSTATUS(status)
    if code == MEMORY_ERROR_EXIT or (code != 0 and "MemoryError" in stderr):
        return "memory_limit", f"MemoryError (limit {limits['memory_mb']} MB)"
    if code != 0:
        return "runtime_error", f"exit status {code}: {stderr}"
    got = run.stdout.decode(errors="replace")
    if outputs_match(got, expected):
        return "correct", ""
    return "wrong", f"expected {expected[:80]!r}, got {got[:80]!r}"


def _cpu_limit(timeout: float) -> tuple[int, int]:
    """RLIMIT_CPU: a backstop for CPU burnt where the wall clock cannot see it (the wall timeout is the
    limit; the soft limit sends SIGXCPU, the hard one SIGKILL)."""
    soft = int(timeout) + 1
    return soft, soft + 1


def _rlimits(limits: dict, timeout: float) -> dict[str, tuple[int, int]]:
    def same(n: int) -> tuple[int, int]:
        return n, n

    return {
        "RLIMIT_CPU": _cpu_limit(timeout),
        "RLIMIT_AS": same(limits["memory_mb"] << 20),
        "RLIMIT_NPROC": same(limits["max_processes"]),
        "RLIMIT_FSIZE": same(limits["max_file_bytes"]),
        "RLIMIT_NOFILE": same(limits["max_open_files"]),
        "RLIMIT_CORE": same(0),
    }


def run_test(
    zygote: Zygote,
    source: bytes,
    stdin: bytes,
    limits: dict,
    timeout: float,
    uid: int | None,
    place: tuple[str | None, str],
) -> Run:
    """`place`: (None, a directory to create) or (the root to chroot into, the empty slot to run in)."""
    root, workdir = place
    if root is None:
        os.mkdir(workdir, 0o700)
        if uid is not None:
            os.chown(workdir, uid, uid)
    seen = workdir[len(root) :] if root else workdir  # the directory's path as the program sees it
    run = Run()
    ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    in_r, in_w = _channel()
    out_r, out_w = _channel()
    err_r, err_w = _channel()
    request = {
        "root": root,
        "cwd": seen,
        "uid": uid,
        "rlimits": _rlimits(limits, timeout),
        "env": {**PROGRAM_ENV, "HOME": seen, "TMPDIR": seen},
    }
    start = time.monotonic()
    try:
        zygote.start(request, [ctl_child.fileno(), in_r, out_w, err_w])
    finally:
        ctl_child.close()
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    try:
        _Exchange(zygote, run, uid, limits, timeout).run(ctl, source, stdin, in_w, out_r, err_r)
    finally:
        run.seconds = time.monotonic() - start
        ctl.close()
        if root is None:
            _remove_tree(workdir)
        else:
            _empty(workdir)
    return run


class _Exchange:
    """One test's I/O: feed the child its source and stdin, collect its output, enforce the wall clock and
    the output cap, and leave no process of the program behind."""

    def __init__(self, zygote: Zygote, run: Run, uid: int | None, limits: dict, timeout: float) -> None:
        self.zygote, self.result, self.uid = zygote, run, uid
        self.max_output = limits["max_output_bytes"]
        self.timeout = timeout
        # poll, not epoll: no system call per (un)registration, and system calls are what costs under gVisor.
        self.sel = selectors.PollSelector()
        self.pending: dict[int, memoryview] = {}
        self.open_pipes: set[int] = set()
        self.closed: set[int] = set()
        self.out, self.err = bytearray(), bytearray()
        self.exited = False
        self.deadline = time.monotonic() + SETUP_SECONDS

    def run(self, ctl: socket.socket, source: bytes, stdin: bytes, in_w: int, out_r: int, err_r: int) -> None:
        self.ctl = ctl
        ctl.setblocking(False)
        os.set_blocking(in_w, False)  # the reading ends stay blocking: they are read only when ready
        self.sel.register(self.zygote.sock, selectors.EVENT_READ)
        self._write(ctl.fileno(), source)
        self._write(in_w, stdin)
        for fd in (out_r, err_r):
            self.sel.register(fd, selectors.EVENT_READ)
            self.open_pipes.add(fd)
        try:
            while not (self.exited and not self.open_pipes):
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self._on_deadline()
                    continue
                for key, events in self.sel.select(remaining):
                    self._on_event(key.fd, events, out_r)
        finally:
            self.sel.close()
            for fd in {in_w, out_r, err_r} - self.closed:
                os.close(fd)
            if not self.exited:  # an exception above: the program must not outlive its test
                kill_leftovers(self.zygote.pid, self.uid)
        if not self.result.ready:  # the child may have sent READY and exited before we read it
            self.result.ready = _recv_ready(ctl)
        self.result.stdout, self.result.stderr = bytes(self.out), bytes(self.err)

    def _write(self, fd: int, data: bytes) -> None:
        self.pending[fd] = memoryview(data)
        self.sel.register(fd, selectors.EVENT_WRITE)

    def _on_event(self, fd: int, events: int, out_r: int) -> None:
        if fd == self.zygote.sock.fileno():
            self._collect()
            kill_leftovers(self.zygote.pid, self.uid)  # daemons holding our pipes would keep them open
            self._exited()
        elif fd == self.ctl.fileno() and events & selectors.EVENT_READ:
            self.sel.unregister(fd)
            if _recv_ready(self.ctl):
                self.result.ready = True
                if not self.exited:  # (its exit may be handled first when both arrive together)
                    self.deadline = time.monotonic() + self.timeout  # the program's clock starts now
        elif events & selectors.EVENT_WRITE:
            if not self._write_some(fd):
                if fd == self.ctl.fileno():
                    self.ctl.shutdown(socket.SHUT_WR)  # EOF ends the source
                    self.sel.register(fd, selectors.EVENT_READ)
                else:
                    os.close(fd)  # EOF on the program's stdin
                    self.closed.add(fd)
        else:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self.sel.unregister(fd)
                self.open_pipes.discard(fd)
            elif fd == out_r:
                if len(self.out) <= self.max_output:
                    self.out += chunk
                if len(self.out) > self.max_output and not self.exited:
                    self.result.killed_for = "output_limit"
                    self._stop()
            else:
                self.err += chunk
                del self.err[:-STDERR_KEEP]  # only the tail matters, and it may be endless

    def _write_some(self, fd: int) -> bool:
        """Write what the pipe takes; False (and unregistered) once all is written or the reader is gone."""
        data = self.pending[fd]
        try:
            n = os.write(fd, data[: 1 << 16])
        except BlockingIOError:
            return True
        except (BrokenPipeError, ConnectionResetError):
            n = len(data)
        self.pending[fd] = data = data[n:]
        if data:
            return True
        self.sel.unregister(fd)
        return False

    def _on_deadline(self) -> None:
        if self.exited:  # a pipe is still open though every process is gone: nothing more will come
            self.open_pipes.clear()
        elif self.result.ready:
            self.result.killed_for = "timeout"
            self._stop()
        else:
            self.result.infra = f"setup did not finish within {SETUP_SECONDS:g} s"
            self._stop()

    def _stop(self) -> None:
        """Kill the program and everything it started, then collect its status from the zygote."""
        kill_leftovers(self.zygote.pid, self.uid)
        with selectors.PollSelector() as sel:
            sel.register(self.zygote.sock, selectors.EVENT_READ)
            if not sel.select(SETUP_SECONDS):
                raise RuntimeError("the zygote did not report a killed program")
        self._collect()
        kill_leftovers(self.zygote.pid, self.uid)
        self._exited()

    def _collect(self) -> None:
        reply = self.zygote.reply()
        self.sel.unregister(self.zygote.sock)
        if "error" in reply:
            self.result.infra = reply["error"]
        else:
            self.result.status, self.result.cpu = reply["status"], reply["cpu"]

    def _exited(self) -> None:
        self.exited = True
        self.deadline = time.monotonic() + DRAIN_SECONDS


def _channel() -> tuple[int, int]:
    """(read end, write end) of a program's stdin, stdout or stderr: a socket pair, not a pipe, since a process
    of the same uid could reopen a pipe through /proc/<pid>/fd (gVisor allows it), and a socket it cannot."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.shutdown(socket.SHUT_WR)
    b.shutdown(socket.SHUT_RD)
    return a.detach(), b.detach()


def _recv_ready(ctl: socket.socket) -> bool:
    try:
        return ctl.recv(1) == READY
    except (BlockingIOError, ConnectionResetError):
        return False


def _scrub_environment() -> None:
    """Zero the environment strings the kernel put on our stack, and forget them. /proc/<pid>/environ reads
    that memory, and gVisor (2022-12) shows it to processes of any uid, undumpable or not: programs could
    read whatever the caller left in the harness's environment. Neither the harness nor the zygote needs it."""
    libc = ctypes.CDLL(None)
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    libc.strlen.restype = ctypes.c_size_t
    i = 0
    while environ[i]:
        ctypes.memset(environ[i], 0, libc.strlen(ctypes.c_void_p(environ[i])))
        i += 1
    os.environ.clear()


def _mount_tmpfs(path: str, size_mb: int) -> None:
    """A fresh tmpfs, root-owned and mode 0755, so that programs cannot write there (runsc's overlay root
    leaves /tmp, /var/tmp and /run/lock writable by everyone)."""
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"mode=0755,size={size_mb}m".encode()
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def _remove_tree(path: str) -> None:
    """Remove a program's directory even if it made parts of it unreadable (root needs no help; a harness
    that is not root does). Most programs leave it empty: one rmdir, not rmtree's walk."""
    try:
        os.rmdir(path)
        return
    except OSError:
        pass
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError:
        for top, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(top, d), 0o700)
        shutil.rmtree(path)


def _empty(path: str) -> None:
    """Remove everything in the directory `path`, which stays."""
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, 0o700)  # a program may have made it unreadable
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
