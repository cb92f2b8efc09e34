"""The sandbox's public API: run a batch of programs against their tests and get a verdict for each."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tpt_stages.records import TestCase, Verdict
from tpt_stages.sandbox import backends
from tpt_stages.sandbox.harness import BUDGET_FACTOR
from tpt_stages.sandbox.procs import PR_SET_DUMPABLE, prctl
from tpt_stages.sandbox.session import HarnessFailed, Session

# Per test, on top of its time limit: the fork, the setup and the cleanup (~40 ms under gVisor when idle).
_SLACK_PER_TEST = 1.0
_SLACK_PER_JOB = 30.0
# A worker whose harness fails to start this many times in a row gives up; the others carry on.
_MAX_START_FAILURES = 2


@dataclass(frozen=True)
class Limits:
    """Per test. `timeout_seconds` is wall time (RLIMIT_CPU is a backstop just above it); memory is
    RLIMIT_AS; processes are RLIMIT_NPROC of the program's own uid."""

    timeout_seconds: float = 4.0
    memory_mb: int = 512
    max_processes: int = 64
    max_output_bytes: int = 1 << 20
    max_file_bytes: int = 16 << 20
    max_open_files: int = 64


@dataclass(frozen=True)
class ProgramJob:
    program: str
    tests: list[TestCase]
    timeout_seconds: float | None = None  # per test, overrides Limits.timeout_seconds
    #: run past a failed test, so that tests_passed counts every passing test (else: stop at the first failure)
    every_test: bool = True


@dataclass(frozen=True)
class ProgramResult:
    verdict: Verdict
    tests_passed: int
    tests_total: int
    seconds: float  # all tests together, as the harness measured them (fork to reaped, per test)
    detail: str | None = None
    stdout_tail: str = ""
    slowest_test_seconds: float = 0.0


def run_batch(
    jobs: Sequence[ProgramJob], limits: Limits = Limits(), backend: str = "auto"
) -> tuple[list[ProgramResult], str]:
    """Run every job and return (results in the order of `jobs`, the backend that ran them).

    Jobs are spread over one harness per CPU. A harness that crashes or overruns its deadline costs the
    job in hand an `infra_error` result (callers retry those) and is replaced; this never raises for a
    program's behaviour and never hangs. Raises SandboxUnavailable if `backend` cannot run here."""
    name = backends.resolve(backend)
    if name in backends.UNWRAPPED and os.geteuid() != 0:
        # Programs will run under our own uid (no root, no uid drop): without this they could read our
        # memory and environment through /proc/<pid>/{mem,environ}, the tests' expected outputs included.
        prctl(PR_SET_DUMPABLE, 0)
    results: list[ProgramResult | None] = [None] * len(jobs)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(jobs)):
        todo.put(i)
    errors: list[str] = []
    workers = [
        threading.Thread(target=_work, args=(name, asdict(limits), jobs, todo, results, errors), daemon=True)
        for _ in range(min(len(jobs), len(os.sched_getaffinity(0)), backends.slots(name) or len(jobs)))
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    why = errors[-1] if errors else "not run"
    return [r or _infra(jobs[i], f"no harness could start: {why}") for i, r in enumerate(results)], name


def _work(
    backend: str,
    limits: dict,
    jobs: Sequence[ProgramJob],
    todo: queue.SimpleQueue[int],
    results: list[ProgramResult | None],
    errors: list[str],
) -> None:
    session: Session | None = None
    start_failures = 0
    try:
        while True:
            if session is None:
                try:
                    session = Session(backend, limits)
                    start_failures = 0
                except (HarnessFailed, OSError) as e:
                    errors.append(str(e))
                    start_failures += 1
                    if start_failures >= _MAX_START_FAILURES:
                        return
                    continue
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            job = jobs[i]
            timeout = job.timeout_seconds or limits["timeout_seconds"]
            wire = {
                "program": job.program,
                "tests": [[t.input, t.output] for t in job.tests],
                "timeout": timeout,
                "every_test": job.every_test,
            }
            try:
                results[i] = _result(session.run(wire, _deadline(len(job.tests), timeout)))
            except HarnessFailed as e:
                results[i] = _infra(job, str(e))
                session = None  # killed by Session.run; the next job gets a fresh harness
    finally:
        if session is not None:
            session.close()


def _deadline(n_tests: int, timeout: float) -> float:
    """How long the harness may take for a job before it is presumed hung (see harness.py's policy)."""
    return min(n_tests, BUDGET_FACTOR + 1) * timeout + n_tests * _SLACK_PER_TEST + _SLACK_PER_JOB


def _result(wire: dict) -> ProgramResult:
    return ProgramResult(
        verdict=Verdict(wire["verdict"]),
        tests_passed=wire["tests_passed"],
        tests_total=wire["tests_total"],
        seconds=wire["seconds"],
        slowest_test_seconds=wire["slowest_test_seconds"],
        detail=wire["detail"],
        stdout_tail=wire["stdout_tail"],
    )


def _infra(job: ProgramJob, why: str) -> ProgramResult:
    return ProgramResult(Verdict.infra_error, 0, len(job.tests), 0.0, detail=why)
