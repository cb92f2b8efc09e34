"""Process hygiene for the harness: prctl switches, and killing every process a program left behind.

A program can escape its process group and session (setsid, double fork), so "kill the group" is not enough.
The harness is a child subreaper: an orphan is re-parented to the harness instead of to init, so every
process a program ever started stays a descendant of the harness until it is reaped. Cleanup therefore kills
every process of the program's own uid (when the harness is root and drops each program to a fresh uid) or
else every descendant but the zygote, and repeats until a scan of /proc finds none: a process forked between
a scan and the kill is found by the next scan, and RLIMIT_NPROC bounds how many there can be. With the `userns`
backend the harness is no subreaper (gVisor allows that only to a pid namespace's init): each program is the
init of a pid namespace of its own instead, so its orphans are re-parented to it and stay descendants too.

Stdlib-only: runs inside the sandbox.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# A fork bomb under RLIMIT_NPROC dies within a few rounds; this many means something is wrong.
_MAX_ROUNDS = 1000

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}): {os.strerror(err)}")


def _snapshot() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, state, real uid) of every process visible in /proc: one file each (status), since
    every file opened is several slow system calls under gVisor."""
    procs: dict[int, tuple[int, str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read()
        except OSError:  # exited since listdir
            continue
        # A program names its own process (Name:, the first line; gVisor does not escape newlines in it): the
        # real lines come after it, so they win in the dict.
        fields = dict(line.split(b":", 1) for line in status.split(b"\n")[1:] if b":" in line)
        procs[int(name)] = (int(fields[b"PPid"]), fields[b"State"].split()[0].decode(), int(fields[b"Uid"].split()[0]))
    return procs


def _descends_from(pid: int, ancestor: int, procs: dict[int, tuple[int, str, int]]) -> bool:
    seen = 0
    while pid in procs and seen < len(procs):
        pid = procs[pid][0]
        if pid == ancestor:
            return True
        seen += 1  # guards against a cycle in a snapshot that raced with re-parenting
    return False


def kill_leftovers(keep: int, uid: int | None) -> int:
    """SIGKILL every process whose real uid is `uid` or, when programs share the harness's uid (`uid` is
    None), every descendant of this process except `keep` (the zygote), until none is left; reap the zombies
    that are this process's children. Returns how many processes were signalled. Raises RuntimeError if
    they do not die.

    By uid when there is one: a program cannot change its real uid (no capabilities, no_new_privs), so that
    finds all of its processes, wherever they were re-parented, and nothing else."""
    me = os.getpid()
    signalled = 0
    for _ in range(_MAX_ROUNDS):
        procs = _snapshot()
        targets: list[int] = []
        zombies: list[int] = []
        for pid, (ppid, state, real_uid) in procs.items():
            if pid in (me, keep):
                continue
            ours = _descends_from(pid, me, procs) if uid is None else real_uid == uid
            if not ours:
                continue
            if state == "Z":
                if ppid == me:
                    zombies.append(pid)
                # a zombie of the zygote is reaped by the zygote; one of a live process dies with it
            else:
                targets.append(pid)
        for pid in zombies:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if not targets and not zombies:
            return signalled
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
                signalled += 1
            except ProcessLookupError:
                pass
        if not zombies:
            time.sleep(0.0005)  # let SIGKILL land before the next scan instead of spinning on /proc
    raise RuntimeError("processes left behind by a program do not die")
