"""How `tpt run` starts a stage: a Python command line run in a process forked from a warm interpreter.

A stage is `python -m tpt_stages <stage> ...`, and on a small machine a fresh interpreter spends much of a
stage importing: vLLM, torch and transformers cost a think stage 8-10 s on 2 cores before it loads its model,
TRL and datasets cost train 6-10 s, and the quick start runs 37 stages. So the executor starts each stage
from multiprocessing's fork server with those modules already imported (`preload.py`): the imports are paid
once per `tpt run`, and every stage still runs in a process of its own, in a session of its own, with its
own environment, working directory and log, so its memory, threads and crashes stay its own and the
executor stops it as it stopped a subprocess (a signal to its process group).

Only where no GPU is visible. Importing vLLM probes the GPUs, and a process that has touched CUDA cannot fork
safely; there every stage starts as a fresh interpreter (multiprocessing's `spawn`), which is what a
subprocess was, and a GPU stage's model load dwarfs its imports anyway.

What a child of the fork server differs in from a fresh `python` (kept small on purpose): the interpreter's
start-up settings (`PYTHONHASHSEED`, `-X` options) are the server's; environment variables that the preloaded
libraries read while being imported were read with the server's values (for the variables `tpt run` sets
per stage, `TPT_REPORT_FILE` and `CUDA_VISIBLE_DEVICES`, nothing reads them at import).
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.connection
import os
import runpy
import sys
from pathlib import Path

# What the fork server imports before it forks (preload.py skips a library that is missing or fails to import).
PRELOAD = ["tpt_stages.preload"]


def _context(warm: bool):
    if not warm:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # takes effect when this process first starts the server
    return ctx


class StageProcess:
    """A started command, with the parts of `subprocess.Popen`'s interface the executor uses."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, *, warm: bool):
        if argv[:1] != [sys.executable] or argv[1:2] not in (["-m"], ["-c"]) or len(argv) < 3:
            raise ValueError(f"not a `{sys.executable} -m|-c` command line: {argv}")
        self._process = _context(warm).Process(
            target=_child, args=(argv[1:], env, os.getcwd(), str(log)), name=f"tpt-stage {argv[2]}"
        )
        self._process.start()
        self.pid = self._process.pid
        self.sentinel = self._process.sentinel  # readable once the process has ended

    @property
    def returncode(self) -> int | None:
        """The exit status; -N when signal N ended it."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._process.join(timeout)
        return self.returncode


def wait_for_exit(processes: list[StageProcess], timeout: float = 1.0) -> None:
    """Return as soon as one of `processes` has ended (or after `timeout`): no polling delay per stage."""
    multiprocessing.connection.wait([p.sentinel for p in processes], timeout)


def _child(args: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In the forked process: become what `python -m MODULE ARGS` (or `-c CODE ARGS`) started in `cwd` with
    `env`, output to `log`, would have been."""
    os.setsid()  # stopped by its process group, as `start_new_session=True` did
    os.chdir(cwd)
    preloaded = sys.modules.get("tpt_stages.preload")  # only in the fork server's children
    os.environ.clear()
    os.environ.update({**(preloaded.SET_BY_IMPORTS if preloaded else {}), **env})
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None where `tpt run` was started without one
            stream.flush()
    os.dup2(fd, 1)  # at the descriptor level: native libraries' output lands in the log too
    os.dup2(fd, 2)
    os.close(fd)
    if sys.stdout is not None:
        sys.stdout.reconfigure(line_buffering=True)  # the log shows progress as it happens (PYTHONUNBUFFERED)
    if preloaded:
        os.write(1, preloaded.PRINTED_BY_IMPORTS.encode())
    flag, what, rest = args[0], args[1], args[2:]
    try:
        if flag == "-m":
            sys.argv = [what, *rest]  # run_module puts the module's path first, as `python -m` does
            runpy.run_module(what, run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *rest]
            exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
    finally:
        # multiprocessing leaves with os._exit, which skips what a normal interpreter exit runs: logging's
        # flush, temporary directories' finalizers, libraries' shutdown hooks.
        atexit._run_exitfuncs()
