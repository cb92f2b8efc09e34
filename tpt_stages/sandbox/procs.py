"""Process hygiene for the harness: prctl switches, and killing every process a program left behind.

A program can escape its process group and session (setsid, double fork), so "kill the group" is not enough.
The harness is a child subreaper: an orphan is re-parented to the harness instead of to init, so every
process a program ever started stays a descendant of the harness until it is reaped. Cleanup therefore kills
all descendants (except the zygote) plus, when programs run under their own uid, every process of that uid,
and repeats until a scan of /proc finds none: a process forked between a scan and the kill is found by the
next scan, and RLIMIT_NPROC bounds how many there can be.

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


def _snapshot() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every process visible in /proc."""
    procs: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # exited since listdir
            continue
        # The command name in parentheses may contain spaces and parentheses: split after the last one.
        fields = stat[stat.rindex(b")") + 2 :].split()
        procs[int(name)] = (int(fields[1]), fields[0].decode())
    return procs


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _descends_from(pid: int, ancestor: int, procs: dict[int, tuple[int, str]]) -> bool:
    seen = 0
    while pid in procs and seen < len(procs):
        pid = procs[pid][0]
        if pid == ancestor:
            return True
        seen += 1  # guards against a cycle in a snapshot that raced with re-parenting
    return False


def kill_leftovers(keep: int, uid: int | None) -> int:
    """SIGKILL every descendant of this process except `keep` (the zygote), and every process whose real
    uid is `uid`, until none is left; reap the zombies that are this process's children (never `keep`).
    Returns how many processes were signalled. Raises RuntimeError if they do not die."""
    me = os.getpid()
    signalled = 0
    for _ in range(_MAX_ROUNDS):
        procs = _snapshot()
        targets: list[int] = []
        zombies: list[int] = []
        for pid, (ppid, state) in procs.items():
            if pid in (me, keep):
                continue
            ours = _descends_from(pid, me, procs) or (uid is not None and _real_uid(pid) == uid)
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
