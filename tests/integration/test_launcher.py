"""The launcher starts a Python command line as `subprocess` would have, from a warm fork server (no GPU) or a
fresh interpreter (`spawn`, with GPUs): the same exit status, log, environment, working directory, session
and exit handlers, in real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tpt_stages.launcher import StageProcess

BOTH = pytest.mark.parametrize("warm", [True, False], ids=["forkserver", "spawn"])


def run(tmp_path, code: str, *, warm: bool, env: dict[str, str] | None = None, timeout: float = 120):
    log = tmp_path / "stage.log"
    proc = StageProcess([sys.executable, "-c", textwrap.dedent(code), "arg1"], env or {}, log, warm=warm)
    assert proc.wait(timeout) is not None, "the command did not finish"
    return proc.returncode, log.read_text()


@BOTH
def test_exit_status_output_environment_and_directory_are_the_launchs(tmp_path, monkeypatch, warm):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONLY_IN_THE_PARENT", "1")
    code = """
        import os, sys
        print("argv", sys.argv[1:], "cwd", os.getcwd())
        print("env", os.environ.get("GIVEN"), os.environ.get("ONLY_IN_THE_PARENT"))
        os.write(2, b"native stderr\\n")
        sys.exit(3)
    """
    status, log = run(tmp_path, code, warm=warm, env={"GIVEN": "yes"})
    assert status == 3
    assert f"argv ['arg1'] cwd {tmp_path}" in log
    assert "env yes None" in log and "native stderr" in log


@BOTH
def test_an_exception_exits_1_with_its_traceback_and_exit_handlers_run(tmp_path, warm):
    code = """
        import atexit
        atexit.register(lambda: print("exit handler ran", flush=True))
        raise RuntimeError("boom")
    """
    status, log = run(tmp_path, code, warm=warm)
    assert status == 1
    assert "RuntimeError: boom" in log and "exit handler ran" in log


def test_a_module_runs_as_main(tmp_path):
    log = tmp_path / "stage.log"
    proc = StageProcess([sys.executable, "-m", "tpt_stages", "nonsense"], {}, log, warm=True)
    assert proc.wait(120) == 2  # argparse's usage error, from tpt_stages/__main__.py run as __main__
    assert "invalid choice: 'nonsense'" in log.read_text()


def test_warm_children_start_with_the_stages_imports_done_and_leave_no_state_behind(tmp_path):
    code = """
        import sys, time
        t = time.monotonic()
        import tpt_stages.stages.think, tpt_stages.trainer
        assert "torch" in sys.modules and "tpt_stages.stages.train" in sys.modules, "not preloaded"
        import tpt_stages.layout as layout
        assert layout.SPEC == "spec.yaml", "a previous child's change is visible"
        layout.SPEC = "changed by a child"
        print("import seconds", time.monotonic() - t)
        print("printed by the imports", repr(sys.modules["tpt_stages.preload"].PRINTED_BY_IMPORTS))
    """
    for _ in range(2):
        status, log = run(tmp_path, code, warm=True)
        assert status == 0, log
        assert float(log.split("import seconds")[1].split()[0]) < 0.5
        printed = eval(log.split("printed by the imports ")[1])  # the repr of a str
        assert log.startswith(printed), "the imports' output is not at the top of the stage's log"


def test_stopping_its_process_group_ends_the_stage_and_what_it_started(tmp_path):
    code = f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(tmp_path / "grandchild")!r}, "w").write(str(child.pid))
        time.sleep(60)
    """
    proc = StageProcess([sys.executable, "-c", textwrap.dedent(code)], {}, tmp_path / "log", warm=True)
    grandchild = tmp_path / "grandchild"
    deadline = time.monotonic() + 60
    while not grandchild.exists() or not grandchild.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)  # a session of its own
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while running(int(grandchild.read_text())):
        assert time.monotonic() < deadline, "the stage's own child outlived it"
        time.sleep(0.1)


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_only_python_command_lines_are_launched(tmp_path):
    with pytest.raises(ValueError, match="command line"):
        StageProcess(["/bin/true"], {}, tmp_path / "log", warm=True)


def test_the_fork_server_ends_with_its_parent_and_prints_nothing(tmp_path):
    """Its output would land on `tpt run`'s terminal (triton's bindings list "leaked" objects when an
    interpreter that imported vLLM is finalized)."""
    code = (
        "import sys; from tpt_stages.launcher import StageProcess; "
        "sys.exit(StageProcess([sys.executable, '-c', 'pass'], {}, sys.argv[1], warm=True).wait(120))"
    )
    # The server holds the same pipes: this returns once it too has ended.
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "log")], capture_output=True, timeout=300)
    assert out.returncode == 0
    assert out.stdout == out.stderr == b"", out.stderr[-2000:]
