"""The file system a program sees under the `userns` backend: a read-only tree, built into the sandbox image, that
each program is chroot'ed into (zygote.py), with one writable directory per harness.

Why: gVisor refuses mount(2) in the harness's unprivileged user namespace, so nothing can hide the pod's /proc (the
grade process's stdout, the pod's log, reopened through /proc/1/fd), its writable directories (/tmp, /dev/shm, the
emptyDirs, where the fetch phase leaves the tests' expected outputs) or /dev/termination-log (the stage report the
operator reads). chroot(2) works there. The tree holds only what a program run by a forked interpreter can reach
for: the standard library and the shared libraries its extension modules load, the interpreter and a shell with a
few tools (programs may start them), each at its own path, since the zygote's sys.path and the dynamic loader's
search path are absolute; empty /proc, /dev and /tmp (nothing of the pod's); and WORK, where the pod mounts one
emptyDir per harness (the slots): the program's directory, emptied by its harness after each test.

Build: `python -I -S -m tpt_stages.sandbox.program_root DEST` (images/sandbox/Dockerfile), as root.

Stdlib-only: runs inside the sandbox image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

# Where the sandbox image has the tree, and where the pod mounts the harnesses' slots in it.
PROGRAM_ROOT = "/opt/tpt-program-root"
WORK = "/work"
# What programs' shells and subprocesses reach for (`yes` is the hostile suite's); the interpreter comes too.
TOOLS = ("sh", "cat", "echo", "head", "ls", "sort", "tail", "tr", "true", "false", "wc", "yes")
# Parts of the standard library that no contest program imports and that cost the most room.
SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "dist-packages"}


def build(dest: str) -> None:
    """Make the tree at `dest` (which must not exist yet)."""
    os.makedirs(dest, 0o755)
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged /usr: the same links as here
        if os.path.islink(f"/{name}"):
            os.symlink(os.readlink(f"/{name}"), os.path.join(dest, name))
    elves = []
    stdlib = sysconfig.get_paths()["stdlib"]
    for top, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if not (top == stdlib and d in SKIP)]
        for name in files:
            elves += _copy(os.path.join(top, name), dest)
    tools = [sys.executable] + [shutil.which(t, path="/usr/bin:/bin") or t for t in TOOLS]
    for tool in tools:
        if not os.path.isabs(tool):
            raise SystemExit(f"program_root: {tool} is not installed")
        elves += _copy(tool, dest)
    for library in _libraries([e for e in elves if e]):
        _copy(library, dest)
    for empty in ("proc", "dev", "tmp", WORK.strip("/")):
        os.makedirs(os.path.join(dest, empty), 0o755, exist_ok=True)


def _copy(path: str, dest: str) -> list[str]:
    """Copy `path` to the same path under `dest`, with the symbolic links on its way (python3 -> python3.11);
    returns [the copied file] if it is an ELF object, else []."""
    while os.path.islink(path):
        target = os.path.join(os.path.dirname(path), os.readlink(path))
        link = _under(dest, path)
        os.makedirs(os.path.dirname(link), 0o755, exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.readlink(path), link)
        path = os.path.normpath(target)
    path = os.path.realpath(path)  # a directory on the way may be a link (/lib -> usr/lib)
    copy = _under(dest, path)
    os.makedirs(os.path.dirname(copy), 0o755, exist_ok=True)
    shutil.copy2(path, copy)
    with open(path, "rb") as f:
        return [path] if f.read(4) == b"\x7fELF" else []


def _under(dest: str, path: str) -> str:
    return os.path.join(dest, os.path.realpath(os.path.dirname(path)).lstrip("/"), os.path.basename(path))


def _libraries(elves: list[str]) -> set[str]:
    """The shared libraries (and the dynamic loader) that the ELF objects `elves` load, as `ldd` finds them."""
    found = set()
    for elf in elves:
        done = subprocess.run(["ldd", elf], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            words = line.split()
            if "=>" in words and len(words) > words.index("=>") + 1 and words[words.index("=>") + 1].startswith("/"):
                found.add(words[words.index("=>") + 1])
            elif words and words[0].startswith("/"):  # the loader: /lib64/ld-linux-x86-64.so.2 (0x...)
                found.add(words[0])
    return found


if __name__ == "__main__":
    build(sys.argv[1])
