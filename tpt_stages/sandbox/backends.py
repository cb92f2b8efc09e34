"""Sandbox backends: what wraps the harness process (the harness itself is the same in all of them).

Every backend but `unsafe` starts the harness in a minimal file system view built by bubblewrap: the system
directories (/usr, /etc and the /bin, /lib, /sbin links), the Python installation, the sandbox's own source
(at VIEW_SOURCE_ROOT, wherever the checkout or the installed package lives: under /tmp the fresh /tmp would
hide it), fresh /dev, /proc and a root-owned /tmp, and nothing else. Without it a program could read whatever
the host leaves world-readable: the run's directory with the tests' expected outputs, checkouts, home
directories.

- `runsc`: gVisor (`runsc do`) inside that view: the harness and its programs run on gVisor's user-space
  kernel with no network device but loopback, so a host kernel bug is out of a program's reach. Needs root
  and both Debian packages (`runsc`, `bubblewrap`). The strongest.
- `bwrap`: bubblewrap alone: the view plus new pid, network, IPC, UTS and cgroup namespaces. One bwrap around
  the whole harness, not one per program (which costs a bwrap start per test, docs/benchmarks.md): that is
  safe because the harness runs every program under a fresh uid of its own and makes itself undumpable, so
  a program can neither signal, trace nor read the harness, the zygote or another program. Needs root for
  the uid drop.
- `userns`: no wrapper; the harness, unprivileged, puts itself and its programs into namespaces of their own
  (namespaces.py) and chroots each program into the sandbox image's program root (program_root.py):
  programs cannot signal, trace or reach the harness, have no network, a System V IPC namespace each, and see
  only the standard library and their own directory. Never picked by `auto`: programs share the caller's uid,
  so it is for a harness already inside isolation that holds nothing else (the cluster's verify pod under
  gVisor), and it needs the image's tree with a slot per harness. Not as root.
- `unsafe`: no wrapper, only the harness's own rlimits, uid drop (when root) and process cleanup. Never
  picked by `auto`; for debugging.

`auto` picks runsc, then bwrap, and refuses to run code when neither works.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tpt_stages.sandbox import program_root

BACKENDS = ("runsc", "bwrap", "userns", "unsafe")
# Those that wrap nothing: the harness runs as the caller's process, with the caller's file system.
UNWRAPPED = ("userns", "unsafe")
AUTO_ORDER = ("runsc", "bwrap")
# The harness's environment: nothing of the caller's (tokens, credentials) goes into the sandbox.
HARNESS_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_PROBE_SECONDS = 60
# Where `tpt_stages` lives, put on the harness's sys.path: `python -I` ignores PYTHONPATH and the cwd.
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
# Where the view shows it: a fixed path outside /tmp, which both bwrap and the harness cover with a tmpfs.
VIEW_SOURCE_ROOT = "/opt/tpt-sandbox"
# The interpreter without its venv: the harness is stdlib-only, and the venv's site-packages stay outside.
PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
# Top-level entries of / that the view keeps (read-only); everything else of the host is absent.
_SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The capabilities the harness needs inside bwrap (bwrap keeps all of root's by default): give each
# program's directory to its uid, drop to that uid, kill and clean up after it, and give each program an IPC
# namespace of its own (CAP_SYS_ADMIN, zygote.py). A program loses them all when it drops to its uid.
_BWRAP_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_ADMIN")


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run here (a configuration problem, not a program's fault)."""


def harness_command(backend: str, limits: dict) -> list[str]:
    """The argv that starts the harness under `backend` (one of BACKENDS); `limits` as in Limits."""
    harness = [*_stdlib_python(backend, "from tpt_stages.sandbox.harness import main; sys.exit(main())")]
    harness += ["--limits", json.dumps(limits)]
    if backend == "userns":
        harness += ["--namespaces", "--root", program_root.PROGRAM_ROOT]
    if backend == "runsc":
        # gVisor's overlay makes the whole view writable (in memory) for everyone: the harness covers /tmp
        # with a root-owned tmpfs before it makes the programs' directories there.
        harness += ["--tmpfs", "/tmp"]
    return wrap(backend, harness, limits["memory_mb"])


def _stdlib_python(backend: str, code: str) -> list[str]:
    """The argv that runs `code` (after `import sys`) on the base interpreter, with tpt_stages importable."""
    # -S: no site-packages, and none of the .pth hooks an installation may carry (this machine's import
    # certifi at every start: 35 ms); the harness is stdlib-only. -B: it writes no bytecode into the view.
    root = SOURCE_ROOT if backend in UNWRAPPED else VIEW_SOURCE_ROOT
    return [PYTHON, "-I", "-S", "-B", "-c", f"import sys; sys.path.insert(0, {root!r}); {code}"]


def wrap(backend: str, argv: list[str], tmp_mb: int = 64) -> list[str]:
    """`argv` run under `backend`, with a /tmp of `tmp_mb` MB (the harness's programs' directories); as it is
    for `userns` and `unsafe` (the harness enters the namespaces of `userns` itself)."""
    if backend in UNWRAPPED:
        return argv
    if backend == "bwrap":
        caps = ["--cap-drop", "ALL"] + [arg for cap in _BWRAP_CAPS for arg in ("--cap-add", cap)]
        unshare = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        return [*_view(tmp_mb), *unshare, *(caps if os.geteuid() == 0 else []), "--", *argv]
    if backend == "runsc":
        # bwrap keeps root's capabilities, which runsc needs to build its own sandbox; --ignore-cgroups: it
        # would otherwise need a writable cgroup hierarchy.
        runsc = ["runsc", "--network=none", "--ignore-cgroups", "do", "-quiet", "-cwd", "/"]
        return [*_view(tmp_mb), "--", *runsc, *argv]
    raise ValueError(f"unknown sandbox backend {backend!r} (one of {', '.join(BACKENDS)})")


def _view(tmp_mb: int) -> list[str]:
    """bwrap's arguments for the minimal file system view (see the module docstring)."""
    args = ["bwrap", "--die-with-parent", "--new-session", "--chdir", "/"]
    for name in sorted(os.listdir("/")):
        path = f"/{name}"
        if name not in _SYSTEM_DIRS:
            continue
        if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += python_binds(sys.base_prefix)
    for part in ("__init__.py", "sandbox"):
        args += _bind_traversable(f"{SOURCE_ROOT}/tpt_stages/{part}", f"{VIEW_SOURCE_ROOT}/tpt_stages/{part}")
    args += ["--dev", "/dev", "--proc", "/proc", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp"]
    return args


def python_binds(prefix: str) -> list[str]:
    """bwrap's arguments that show the Python installation at `prefix` (sys.base_prefix) in the view, at its
    own path: an installation may find its libraries by absolute path (a shared libpython's rpath), so it
    cannot move. Raises SandboxUnavailable for one under /tmp, which the view's fresh /tmp hides."""
    path = Path(prefix).resolve()
    if path.parts[1] in _SYSTEM_DIRS:
        return []
    if path.parts[1] == "tmp":
        raise SandboxUnavailable(
            f"the sandbox cannot run the Python installed at {path}: the sandbox's fresh /tmp hides it; "
            "use a Python installed elsewhere (a virtual environment under /tmp is fine)"
        )
    return _bind_traversable(str(path), str(path))  # e.g. a pyenv build under /root


def _bind_traversable(source: str, dest: str) -> list[str]:
    """A read-only bind of `source` at `dest`, whose parent directories bwrap creates with mode 0755 instead
    of copying the host's (a program's uid must be able to reach Python's standard library under a 0700 /root)."""
    args: list[str] = []
    for parent in reversed(Path(dest).parents[:-1]):
        args += ["--perms", "0755", "--dir", str(parent)]
    return [*args, "--ro-bind", source, dest]


@functools.cache
def _works(backend: str) -> bool:
    if backend == "unsafe":
        return True
    if backend == "userns":
        if os.geteuid() == 0:
            return False
        if not slots(backend):
            return False
        flags = "n.CLONE_NEWPID | n.CLONE_NEWIPC | n.CLONE_NEWNET"  # what the harness enters
        argv = _stdlib_python(
            backend, f"from tpt_stages.sandbox import namespaces as n; n.enter_user_namespace({flags})"
        )
    else:
        if shutil.which("bwrap") is None:
            return False
        if backend == "runsc" and (os.geteuid() != 0 or shutil.which("runsc") is None):
            return False
        argv = wrap(backend, ["/bin/true"])
    try:
        done = subprocess.run(argv, env=HARNESS_ENV, capture_output=True, timeout=_PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def slots(backend: str) -> int | None:
    """How many harnesses of `backend` may run at once: for `userns`, the slots that the pod mounted in the
    sandbox image's program root (program_root.py), 0 without one; None where nothing limits it."""
    if backend != "userns":
        return None
    try:
        return len(os.listdir(os.path.join(program_root.PROGRAM_ROOT, program_root.WORK.strip("/"))))
    except OSError:
        return 0


def available_backends() -> list[str]:
    """The backends that work on this machine, strongest first (`unsafe` always, last). Probed once per
    process: runsc and bwrap are each started once on /bin/true, and a process enters the namespaces of
    `userns`."""
    return [b for b in BACKENDS if _works(b)]


def resolve(backend: str) -> str:
    """The backend to use for `backend` (auto or one of BACKENDS); raises SandboxUnavailable."""
    if backend == "auto":
        for candidate in AUTO_ORDER:
            if _works(candidate):
                return candidate
        raise SandboxUnavailable(
            "no sandbox for running model-written code: install gVisor and bubblewrap as root "
            "(apt-get install runsc bubblewrap), or choose the unsafe backend explicitly (bare rlimits: "
            "only where the isolation comes from outside, such as a gVisor pod)"
        )
    if backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {backend!r} (auto or one of {', '.join(BACKENDS)})")
    if not _works(backend):
        need = {
            "runsc": "root, runsc and bwrap",
            "bwrap": "bwrap",
            "userns": "a user other than root who may create user namespaces and the sandbox image's program "
            f"root at {program_root.PROGRAM_ROOT} with a slot mounted, as in the verify pod",
        }[backend]
        raise SandboxUnavailable(f"sandbox backend {backend!r} does not work on this machine (it needs {need})")
    return backend
