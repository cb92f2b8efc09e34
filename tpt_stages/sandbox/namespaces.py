"""Linux namespaces for an unprivileged harness (the `userns` backend: the verify pod's uid 65534 under gVisor).

In the pod the harness cannot drop each program to a uid of its own (no root), so programs share its uid. Under
gVisor (Debian's 2022-12 runsc) a process may then signal the harness and the zygote, and reopen their pipes
through /proc/<pid>/fd, undumpable or not. Namespaces keep them out of reach instead:

- the zygote enters a user namespace that maps only its own uid and gid (all an unprivileged process may map),
  which gives it the capabilities to make the others, and a network namespace: programs have loopback only;
- it starts each child in new pid and IPC namespaces (`fork_into`, one clone(2): no extra fork per test): the
  program is PID 1 of a pid namespace that holds nothing else, so it cannot name the harness, the zygote or the
  caller in kill(2), ptrace(2) or pidfd_open(2); everything it starts dies with it (the kernel kills a pid
  namespace when its init exits); its System V IPC objects vanish with it. The child then drops every
  capability before the program runs;
- every channel between the caller, the harness and a program is a socket, which /proc/<pid>/fd cannot reopen
  (ENXIO), not a pipe.

gVisor refuses mount(2) in such a namespace, so the child chroots instead, into the image's program root
(program_root.py), before it drops its capabilities (docs/sandbox.md, "Known limits").

Stdlib-only: runs inside the sandbox.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal

CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}

_libc = ctypes.CDLL(None, use_errno=True)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare({flags:#x}): {os.strerror(err)}")


def enter_user_namespace(flags: int = 0) -> None:
    """unshare a new user namespace (and the namespaces in `flags`) that maps only our own uid and gid, to
    themselves. Call it while still dumpable: the maps are files of our own /proc/self."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        # Mapped to itself, root would stay root: programs would own every root-owned file on the host.
        raise OSError("user namespaces are for an unprivileged harness; as root use the runsc or bwrap backend")
    unshare(CLONE_NEWUSER | flags)
    try:
        # Linux wants this before an unprivileged gid_map; gVisor has no such file to write.
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
    except OSError:
        pass
    for name, own in (("uid_map", uid), ("gid_map", gid)):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(f"{own} {own} 1")


def fork_into(flags: int) -> int:
    """fork(2) into new namespaces (`flags`, CLONE_NEW*): the child's pid namespace, if new, has it as PID 1.
    Returns 0 in the child and its pid in the parent, as os.fork does, with the same interpreter bookkeeping
    around it (the at-fork hooks, the import lock, the thread state)."""
    number = _SYS_CLONE.get(platform.machine())
    if number is None:
        raise OSError(f"no clone(2) system call number known for {platform.machine()}")
    # PyDLL: the GIL stays held across the call, as fork requires; a zero stack pointer makes clone a fork.
    syscall = ctypes.PyDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = syscall(ctypes.c_long(number), ctypes.c_long(flags | signal.SIGCHLD), *[ctypes.c_long(0)] * 4)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone({flags:#x}): {os.strerror(err)}")
    return pid


def drop_capabilities() -> None:
    """Clear the effective, permitted and inheritable capability sets (those a process has in a user namespace
    it made). With no_new_privs set afterwards, nothing gives them back."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(_LINUX_CAPABILITY_VERSION_3, 0), (Data * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
