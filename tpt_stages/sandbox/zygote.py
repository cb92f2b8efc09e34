"""The fork server: a warm interpreter that forks once per test and runs the program in the child.

Why: starting `python3` costs ~12 ms bare and ~45 ms under gVisor's ptrace platform, a fork of a warm
interpreter ~1 ms bare and ~20 ms under gVisor (measured: docs/sandbox.md), and the modules that contest
programs import are already loaded.

Why a separate, freshly exec'd process instead of forking the harness: a forked child has a copy of its
parent's memory, and a program can read its own memory (`/proc/self/environ`, `gc.get_objects()`). Forked
from the harness, it would find the harness's environment and, later, the tests' expected outputs. The zygote
is a new interpreter with a clean environment, started before the harness reads any job, and it never
receives a test, an input or an expected output: it gets only limits, a uid and four descriptors. The
program's source travels over a socket straight from the harness to the child, so the zygote never sees that
either.

Protocol on the harness<->zygote SOCK_SEQPACKET socket: one JSON request with the descriptors (control, stdin,
stdout, stderr) attached per test; one JSON reply when the child has been reaped: `{"status": wait status,
"cpu": seconds}` or `{"error": why the fork failed}`. On the control socket the harness sends the source and
shuts down its side; the child answers one byte once it runs as the program's uid under its limits, just
before the program starts. A child that exits without that byte failed in setup: an infra error, which a
program cannot fake because the socket is closed before its code runs.

Stdlib-only: runs inside the sandbox.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import gc
import importlib
import io
import json
import os
import resource
import signal
import site
import socket
import sys
import traceback
import types

from tpt_stages.sandbox import namespaces
from tpt_stages.sandbox.procs import PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, prctl

# What contest programs commonly import, loaded once here instead of once per test. Not more: under gVisor a
# fork costs more the more the zygote has mapped (decimal, fractions and statistics cost ~10% throughput).
PRELOAD = (
    "array", "bisect", "collections", "copy", "functools", "heapq", "itertools",
    "math", "operator", "random", "re", "string", "threading", "typing",
)  # fmt: skip
# The child's exit status when the program died of MemoryError (RLIMIT_AS). A program can exit with it on
# purpose, but that only turns its runtime_error into memory_limit: both are failures.
MEMORY_ERROR_EXIT = 251
# Python's own status when flushing stdout fails at exit (e.g. RLIMIT_FSIZE, a closed pipe).
FLUSH_ERROR_EXIT = 120
READY = b"R"
_MAX_MESSAGE = 1 << 16
# In namespaces of its own (the `userns` backend): set by serve() from its argv.
_isolated = False


class Zygote:
    """The harness's handle on the fork server."""

    def __init__(self, env: dict[str, str], isolated: bool = False) -> None:
        """Start the fork server with `env` as its (and so every program's) whole environment. `isolated`: it
        enters a user and a network namespace of its own and starts each child in new pid and IPC namespaces
        (namespaces.py)."""
        import subprocess  # here, not at the top: the zygote itself stays small (see PRELOAD)

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = f"import sys; sys.path.insert(0, {root!r}); from tpt_stages.sandbox.zygote import serve; serve()"
        with child:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    "-c",
                    code,
                    str(child.fileno()),
                    str(os.getpid()),
                    str(int(isolated)),
                ],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,  # the harness's stdin carries jobs and its stdout results
                stdout=subprocess.DEVNULL,
                env=env,
            )
        self.pid = self.proc.pid
        self.sock = parent

    def start(self, request: dict, fds: list[int]) -> None:
        """Fork a child for `request` (root: the directory to chroot into or None, cwd (in the root), uid,
        rlimits, env) with fds (control, stdin, stdout, stderr)."""
        socket.send_fds(self.sock, [json.dumps(request).encode()], fds)

    def reply(self) -> dict:
        """The reply to the last request (blocks: select on `sock` first). Raises EOFError if the zygote died."""
        data = self.sock.recv(_MAX_MESSAGE)
        if not data:
            raise EOFError("the zygote died")
        return json.loads(data)


def serve() -> None:
    """The zygote's main (argv: the socket's descriptor, the harness's pid, 1 if isolated)."""
    global _isolated
    try:
        sock = socket.socket(fileno=int(sys.argv[1]))
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != int(sys.argv[2]):  # the harness died before the prctl
            os._exit(1)
        _isolated = sys.argv[3] == "1"
        if _isolated:  # while still dumpable: the uid and gid maps are files of our /proc/self
            namespaces.enter_user_namespace(namespaces.CLONE_NEWNET)
        prctl(PR_SET_DUMPABLE, 0)  # exec made us dumpable again; a program of the same uid must not trace us
        for name in PRELOAD:
            importlib.import_module(name)
        # Programs get the standard library only (-S: no site-packages), but the builtins `python3 main.py`
        # has from `site`: contest programs do call exit().
        site.setquit()
        gc.freeze()  # the preloaded objects: a child's collections then leave their pages shared
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 4)
            if not msg:
                os._exit(0)
            _reap_strays()
            try:
                pid = (
                    namespaces.fork_into(namespaces.CLONE_NEWPID | namespaces.CLONE_NEWIPC) if _isolated else os.fork()
                )
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                sock.send(json.dumps({"error": f"fork: {e}"}).encode())
                continue
            if pid == 0:
                sock.close()
                _child(json.loads(msg), fds)  # never returns
            for fd in fds:
                os.close(fd)
            _, status, usage = os.wait4(pid, 0)
            sock.send(json.dumps({"status": status, "cpu": usage.ru_utime + usage.ru_stime}).encode())
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def _reap_strays() -> None:
    """A program can make children of the zygote (clone with CLONE_PARENT); the harness kills them, the
    zygote reaps them."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict, fds: list[int]) -> None:
    zygote_pid = os.getppid()  # 0 when isolated: the zygote is outside our pid namespace
    try:
        control, stdin, stdout, stderr = fds
        os.setsid()  # own session and process group, no controlling terminal
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2), (control, 3)):
            os.dup2(fd, target)
        _close_from(4)  # the zygote's sockets and everything else
        ctl = socket.socket(fileno=3)
        chunks = []
        while chunk := ctl.recv(1 << 16):
            chunks.append(chunk)
        source = b"".join(chunks).decode("utf-8", errors="surrogateescape")
        if request.get("root"):  # (`userns`) while our user namespace's CAP_SYS_CHROOT is still ours
            os.chroot(request["root"])
        os.chdir(request["cwd"])  # after the chroot: a cwd outside the new root would be a way out of it
        os.umask(0o077)
        for name, (soft, hard) in request["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        uid = request["uid"]
        if uid is not None:
            _own_ipc_namespace()
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        elif _isolated:
            namespaces.drop_capabilities()  # those our user namespace gave the zygote
        prctl(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can give privileges back
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # set after setuid, which clears it
        prctl(PR_SET_DUMPABLE, 1)  # the uid change cleared it; the program may read its own /proc/self
        if os.getppid() != zygote_pid:
            os._exit(1)
        # Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE would fail with EFBIG and look like any other
        # crash; with the default action the program dies of the signal and the verdict says output_limit.
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        if "random" in sys.modules:  # preloaded: else every program would inherit the zygote's random state
            sys.modules["random"].seed()
        ctl.sendall(READY)
        ctl.close()
    except BaseException:
        # Setup failed: no READY byte, so the harness reports infra_error. The trace goes to the test's
        # stderr pipe, which the harness keeps in the result's detail.
        traceback.print_exc()
        os._exit(1)
    os._exit(_run(source))


def _run(source: str) -> int:
    """Run `source` as `python3 main.py` would, and return the exit status."""
    main = types.ModuleType("__main__")
    main.__file__ = "main.py"
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = ["main.py"]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), errors="backslashreplace", line_buffering=True
    )
    try:
        exec(compile(source, "main.py", "exec"), main.__dict__)
        status = 0
    except SystemExit as e:
        status = _exit_status(e)
    except MemoryError:
        status = MEMORY_ERROR_EXIT
        _print_exception()
    except BaseException:
        status = 1
        _print_exception()
    # What the interpreter does at exit: join non-daemon threads, run atexit handlers, flush.
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BaseException:
        status = FLUSH_ERROR_EXIT
    with contextlib.suppress(BaseException):
        sys.stderr.flush()
    return status


def _close_from(lowest: int) -> None:
    """Close every descriptor from `lowest` up. Not os.closerange: gVisor has no close_range(2), and Python
    then closes every number up to the descriptor limit, one system call each (~10 ms under gVisor)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= lowest:
            with contextlib.suppress(OSError):  # the descriptor of the listing itself, closed by now
                os.close(fd)


def _own_ipc_namespace() -> None:
    """A System V IPC namespace of the program's own: the segments, queues and semaphores it creates vanish
    with its last process, instead of outliving it as a channel to the next program. Needs CAP_SYS_ADMIN,
    which root has inside runsc and bwrap (backends.py grants it); elsewhere (an unsafe harness in a
    container without it) programs share the harness's namespace, as they share its network."""
    with contextlib.suppress(PermissionError):  # EPERM: no CAP_SYS_ADMIN here
        namespaces.unshare(namespaces.CLONE_NEWIPC)


def _exit_status(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def _print_exception() -> None:
    """The traceback as `python3 main.py` prints it: without the frame of `_run`."""
    kind, value, tb = sys.exc_info()
    try:
        if value is not None and tb is not None:
            value = value.with_traceback(tb.tb_next)
        sys.excepthook(kind, value, tb.tb_next if tb else None)
    except BaseException:
        pass
