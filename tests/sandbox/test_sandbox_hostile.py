"""The hostile suite: programs that attack the sandbox, each with the verdict it must get and the proof that
nothing escaped, under every backend that works here (runsc and bwrap must both run in CI).

Per backend, one harness runs the whole suite in order, as a verify shard would, and after every hostile
program a witness program (another program of the same harness) looks for what the last one may have left:
processes of program uids, files in shared writable places, System V IPC objects. The harness's environment
carries a canary secret that no program may read. `unsafe` runs the suite for its verdicts only: it isolates
nothing from the host (network, host /tmp), so the escape checks that need isolation are skipped there.
"""

from __future__ import annotations

import json
import secrets
import socket
import textwrap
import time
from dataclasses import asdict
from typing import NamedTuple

import pytest

from tpt_stages.sandbox import Limits, available_backends
from tpt_stages.sandbox import backends as sandbox_backends
from tpt_stages.sandbox import session as sandbox_session
from tpt_stages.sandbox.harness import UID_RANGE

BACKENDS = available_backends()
LIMITS = Limits(timeout_seconds=1.0, memory_mb=256, max_processes=32, max_output_bytes=1 << 16, max_file_bytes=1 << 20)
CANARY = f"TPTCANARY{secrets.token_hex(8)}"
SECRET_ANSWER = secrets.token_hex(16)  # an expected output that no program is told


def test_runsc_and_bwrap_are_installed():
    """CI installs both (README's set-up); without them the suite below would silently shrink."""
    assert {"runsc", "bwrap"} <= set(BACKENDS), BACKENDS


class Case(NamedTuple):
    name: str
    verdict: str  # or several, "a|b"
    program: str
    stdin: str = ""
    expected: str = "x"
    isolated: bool = False  # the proof needs isolation beyond the harness's own (not `unsafe`)
    timeout: float = 1.0  # the program's time limit per test: more where gVisor is slow to fault memory in


CASES = [
    Case(
        "fork_bomb",
        "timeout",
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    ),
    # Dies of the first failed fork, unless its children keep the CPUs busy until its time is up.
    Case("fork_bomb_that_dies", "runtime_error|timeout", "import os\nwhile True: os.fork()\n"),
    Case("memory_bomb", "memory_limit", "x = bytearray(10 ** 10)\n", timeout=5.0),
    Case("memory_creep", "memory_limit", "a = []\nwhile True: a.append(' ' * 10 ** 7)\n", timeout=5.0),
    Case("infinite_loop", "timeout", "while True: pass\n"),
    Case("sleep_forever", "timeout", "import time\ntime.sleep(10 ** 6)\n"),
    Case("stops_itself", "timeout", "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n"),
    Case(
        "ignores_signals",
        "timeout",
        """
        import signal
        for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        while True: pass
        """,
    ),
    Case("gigabytes_of_output", "output_limit", "import sys\nwhile True: sys.stdout.write('x' * 65536)\n"),
    Case("yes_from_a_shell", "output_limit", "import os\nos.execv('/bin/sh', ['sh', '-c', 'yes'])\n"),
    Case(
        "endless_stderr_then_answer",
        "correct",
        """
        import sys
        for _ in range(200): sys.stderr.write('e' * 65536)
        print(42)
        """,
        expected="42",
    ),
    Case("big_file", "output_limit", "open('big', 'wb').write(b'x' * (50 << 20))\n"),
    Case("right_answer_then_crash", "runtime_error", "print(42, flush=True)\nimport os\nos.abort()\n", expected="42"),
    Case("right_answer_then_exit_3", "runtime_error", "print(42)\nraise SystemExit(3)\n", expected="42"),
    Case(
        "forged_verdict_line",
        "wrong",
        """
        import json
        print(json.dumps({"verdict": "correct", "tests_passed": 1, "tests_total": 1, "seconds": 0,
                          "detail": None, "stdout_tail": ""}))
        """,
        expected="42",
    ),
    Case(
        "tamper_with_results",
        "correct",
        """
        import os
        reached = []
        for pid in ("1", "2", str(os.getppid())):
            for fd in ("0", "1", "2"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null":
                        continue  # gVisor lets it reopen the zygote's /dev/null: harmless
                    with open(f"/proc/{pid}/fd/{fd}", "w") as f:
                        f.write('{"verdict": "correct", "tests_passed": 1}\\n')
                    reached.append(f"{pid}/{fd}")
                except OSError:
                    pass
        print(reached or "denied")
        """,
        expected="denied",
    ),
    # Judged by the effect, not the errno: in a pid namespace of its own (`userns`) the program is PID 1 and its
    # parent is outside (getppid() is 0), so it may well kill "1" or "2": itself, or its own children. Had it
    # reached the zygote, the program would die with it (its parent death signal) and the harness after it.
    Case(
        "kill_parent_and_init",
        "correct",
        """
        import os, signal, time
        for pid in {os.getppid(), 1, 2} - {0, os.getpid()}:  # 0: its own process group
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
        print(42)
        """,
        expected="42",
    ),
    # kill(-1) reaches every process of its uid but itself: nothing of the harness.
    Case(
        "kill_every_process",
        "correct",
        """
        import os, signal
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:  # gVisor: no process to signal
            pass
        print(42)
        """,
        expected="42",
    ),
    Case(
        "ptrace_parent",
        "correct",
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        PTRACE_ATTACH = 16
        attached = [p for p in (os.getppid(), 1) if libc.ptrace(PTRACE_ATTACH, p, 0, 0) == 0]
        print(attached or "denied")
        """,
        expected="denied",
    ),
    Case(
        "become_root",
        "correct",
        """
        import os
        try:
            os.setuid(0)
            print("root")
        except OSError:
            print("denied")
        """,
        expected="denied",
    ),
    Case(
        "read_etc_shadow",
        "correct",
        """
        try:
            print(open("/etc/shadow").read())
        except OSError:
            print("denied")
        """,
        expected="denied",
    ),
    Case(
        "read_harness_environ_and_memory",
        "correct",
        """
        import os
        found = []
        for pid in os.listdir("/proc"):
            for part in ("environ", "cmdline", "mem"):
                try:
                    with open(f"/proc/{pid}/{part}", "rb") as f:
                        data = f.read(1 << 20)
                except (OSError, ValueError):
                    continue
                if b"TPTCANARY" in data:
                    found.append(f"{pid}/{part}")
        if "TPTCANARY" in str(os.environ) or "TPTCANARY" in str(globals()):
            found.append("own")
        print(found or "clean")
        """,
        expected="clean",
    ),
    Case(
        "hunt_for_the_expected_output",
        "wrong",
        """
        import gc, os, re
        # Only a prefix of the secret answer is known: look for it followed by the rest.
        needle = re.compile(input().strip().encode() + rb"[0-9a-f]{8}")
        hits = []
        for top in ("/tmp", "/work", "/home", "/var", "/run", "/dev/shm", "/mnt", "/srv", "/opt"):
            for d, _, files in os.walk(top):
                for name in files:
                    try:
                        with open(os.path.join(d, name), "rb") as f:
                            if needle.search(f.read(1 << 20)):
                                hits.append(os.path.join(d, name))
                    except OSError:
                        pass
        for pid in os.listdir("/proc"):
            for part in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{pid}/{part}", "rb") as f:
                        if needle.search(f.read()):
                            hits.append(f"/proc/{pid}/{part}")
                except (OSError, ValueError):
                    pass
        if any(isinstance(o, (str, bytes)) and needle.search(o if isinstance(o, bytes) else o.encode())
               for o in gc.get_objects()):
            hits.append("memory")
        print(hits or "not found")
        """,
        stdin="SECRET_PREFIX\n",
        expected=SECRET_ANSWER,
        isolated=True,
        timeout=5.0,  # in the pod it reads the image's /opt (the grader's libraries) under gVisor: slow when loaded
    ),
    Case(
        "daemon_that_outlives_it",
        "correct",
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(0.5)  # holds stdout open, and would write into the next test
                while True:
                    print("daemon", flush=True)
            os._exit(0)
        time.sleep(0.1)
        print(42)
        """,
        expected="42",
    ),
    Case(
        "fd_exhaustion",
        "correct",
        """
        import os
        fds = []
        try:
            while True:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        print("capped" if len(fds) < 100 else len(fds))
        """,
        expected="capped",
    ),
    Case(
        "thread_bomb",
        "correct",
        """
        import threading, time
        n = 0
        try:
            while True:
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
                n += 1
        except RuntimeError:
            pass
        print("capped" if n < 100 else n)
        """,
        expected="capped",
    ),
    Case("ignores_huge_stdin", "correct", "print(42)\n", stdin="1 " * (4 << 20), expected="42"),
    Case(
        "write_outside_its_directory",
        "correct",
        """
        import os
        written = []
        for path in ("/tmp/x", "/dev/shm/x", "/var/tmp/x", "/etc/x", "/x", "/usr/x", "../x", "/root/x",
                     os.path.join(os.path.dirname(os.getcwd()), "x")):
            try:
                with open(path, "w") as f:
                    f.write("x")
                written.append(path)
            except OSError:
                pass
        print(written or "denied")
        """,
        expected="denied",
        isolated=True,
    ),
    Case(
        "connect_to_the_network",
        "correct",
        """
        import socket
        reached = []
        for host, port in (("127.0.0.1", HOST_PORT), ("1.1.1.1", 53), ("8.8.8.8", 443)):
            try:
                socket.create_connection((host, port), timeout=0.3).close()
                reached.append(host)
            except OSError:
                pass
        try:
            socket.getaddrinfo("example.com", 80)
            reached.append("dns")
        except OSError:
            pass
        print(reached or "blocked")
        """,
        expected="blocked",
        isolated=True,
    ),
    Case(
        "leave_ipc_and_shm_behind",
        "correct",
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        IPC_CREAT = 0o1000
        libc.shmget(0x7470, 4096, IPC_CREAT | 0o666)
        libc.msgget(0x7471, IPC_CREAT | 0o666)
        for d in ("/dev/shm", "/tmp"):
            try:
                open(os.path.join(d, "left"), "w").write("x")
            except OSError:
                pass
        print(42)
        """,
        expected="42",
        isolated=True,
    ),
    Case(
        "starts_in_an_empty_directory",
        "correct",
        """
        import os
        print(os.listdir("."), os.getcwd() == os.environ["HOME"])
        os.makedirs("a/b")
        open("a/b/f", "w").write("x")
        os.chmod("a", 0)  # the harness removes it all the same
        """,
        expected="[] True",
    ),
]

# The witness runs after every case in the same harness: anything it finds was left by the case before it.
WITNESS = f"""
import os
me, findings = os.getuid(), []
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            uid = int(next(l for l in open(f"/proc/{{pid}}/status") if l.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if {UID_RANGE[0]} <= uid and uid != me:
            findings.append(f"process {{pid}} of uid {{uid}}")
if CHECK_SHARED_PLACES:
    for d in ("/dev/shm", "/var/tmp"):
        if os.path.isdir(d) and os.listdir(d):
            findings.append(f"{{d}}: {{os.listdir(d)}}")
    for f in ("/tmp/x", "/tmp/left"):
        if os.path.exists(f):
            findings.append(f)
    import ctypes
    libc = ctypes.CDLL(None)
    if libc.shmget(0x7470, 0, 0) != -1 or libc.msgget(0x7471, 0) != -1:
        findings.append("System V IPC objects")
print(findings or "clean")
"""


@pytest.fixture(scope="module", params=BACKENDS)
def suite(request):
    """Run every case, each followed by the witness, in one harness of the backend; returns
    {name: (result, witness result, wall seconds)}."""
    backend = request.param
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    limits = asdict(LIMITS)
    witness = WITNESS.replace("CHECK_SHARED_PLACES", str(backend != "unsafe"))
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sandbox_session, "HARNESS_ENV", {**sandbox_backends.HARNESS_ENV, "TPT_SECRET": CANARY})
        harness = sandbox_session.Session(backend, limits)
        try:
            for case in CASES:
                if case.isolated and backend == "unsafe":
                    continue
                program = textwrap.dedent(case.program).replace("HOST_PORT", str(port))
                stdin = case.stdin.replace("SECRET_PREFIX", SECRET_ANSWER[:8])
                job = {"program": program, "tests": [[stdin, case.expected]], "timeout": case.timeout}
                start = time.monotonic()
                result = harness.run(job, 60)
                took = time.monotonic() - start - case.timeout
                check = harness.run({"program": witness, "tests": [["", "clean"]], "timeout": 5.0}, 60)
                out[case.name] = (result, check, took)
        finally:
            harness.close()
            listener.close()
    return backend, out


@pytest.mark.parametrize(("name", "verdict", "isolated"), [(c.name, c.verdict, c.isolated) for c in CASES])
def test_hostile_program(suite, name, verdict, isolated):
    backend, results = suite
    if isolated and backend == "unsafe":
        pytest.skip("unsafe isolates nothing from the host")
    result, witness, took = results[name]
    assert result["verdict"] in verdict.split("|"), result
    # Nothing may hang the harness: past the time limit, only the cleanup (slow for a fork bomb in gVisor on
    # a loaded machine, where a /proc scan and a kill are system calls of ~0.1 ms each).
    assert took < 15, took
    assert CANARY not in json.dumps(result) and SECRET_ANSWER not in result["stdout_tail"]
    assert witness["verdict"] == "correct", witness


def test_suite_is_hostile_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "unsafe"])
def test_the_canary_does_reach_the_harness(backend):
    """Else `read_harness_environ_and_memory` would prove nothing: the wrapper passes the environment on."""
    import subprocess

    argv = sandbox_backends.wrap(backend, ["/bin/sh", "-c", "cat /proc/self/environ"])
    env = {**sandbox_backends.HARNESS_ENV, "TPT_SECRET": CANARY}
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert CANARY.encode() in done.stdout, done
