"""The sandbox works wherever the package and the virtual environment live, /tmp included (which the sandbox's
own fresh /tmp covers): a newcomer's clone under /tmp got infra_error for every program."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

import tpt_stages
from tpt_stages.sandbox.backends import SandboxUnavailable, python_binds

# Run `tpt` from the copy, after checking that the copy is what got imported.
_TPT = (
    "import sys, tpt_stages; assert tpt_stages.__file__.startswith(sys.argv[1]), tpt_stages.__file__; "
    "from tpt_stages.cli import main; sys.exit(main(sys.argv[2:]))"
)


def env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


@pytest.fixture(scope="module")
def copy_under_tmp():
    """A copy of the package and a fresh virtual environment, both under /tmp (pytest's tmp_path may be
    elsewhere); the environment reaches this one's dependencies through a .pth file."""
    root = Path(tempfile.mkdtemp(prefix="tpt-newcomer-", dir="/tmp"))
    try:
        shutil.copytree(Path(tpt_stages.__file__).parent, root / "src" / "tpt_stages")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
        python = root / "venv" / "bin" / "python"
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        yield python, root / "src"
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("backend", ["runsc", "bwrap"])
def test_a_copy_under_tmp_runs_programs(copy_under_tmp, backend, tmp_path):
    python, src = copy_under_tmp
    (tmp_path / "p.py").write_text("a, b = map(int, input().split())\nprint(a + b)\n")
    (tmp_path / "tests.json").write_text(json.dumps([{"input": "1 2\n", "output": "3\n"}]))
    argv = ["sandbox", "run", str(tmp_path / "p.py"), "--tests", str(tmp_path / "tests.json"), "--backend", backend]
    done = subprocess.run([python, "-c", _TPT, str(src), *argv], capture_output=True, text=True, cwd="/", env=env(src))
    assert done.returncode == 0, done.stdout + done.stderr
    line = json.loads(done.stdout)
    assert (line["verdict"], line["backend"], line["tests_passed"]) == ("correct", backend, 1), line["detail"]


def test_check_from_a_copy_under_tmp_runs_a_program(copy_under_tmp):
    python, src = copy_under_tmp
    argv = [python, "-c", _TPT, str(src), "sandbox", "check"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd="/", env=env(src))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == ["runsc: works (auto)", "bwrap: works"]


def test_a_python_installed_under_tmp_is_refused_clearly():
    assert python_binds("/usr") == []
    assert python_binds("/root/.pyenv/versions/3.11.9")[-3:] == ["--ro-bind", *["/root/.pyenv/versions/3.11.9"] * 2]
    with pytest.raises(SandboxUnavailable, match="Python installed at /tmp/python: the sandbox's fresh /tmp hides"):
        python_binds("/tmp/python")
