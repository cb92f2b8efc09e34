"""Sandbox throughput: the same batch of short programs through each way of running them.

    .venv/bin/python benchmarks/bench_sandbox.py [--n 1000] [--per-program-n 40]

- bare: one interpreter subprocess per program, as many at a time as there are CPUs, no isolation at all:
  (1) the harness's interpreter with -I -S, as the harness runs it (the fastest start it has), and, when
  Debian's /usr/bin/python3 is another interpreter, (2) that one as a naive grader would run it.
- harness (unsafe / bwrap / userns / runsc): `run_batch`, one harness per CPU, each started once for the whole
  batch, programs forked from its warm zygote. `--backends userns` inside the sandbox image run as the verify
  pod (docs/benchmarks.md gives the podman command) measures the pod's own way.
- one sandbox per program (bwrap / runsc): a fresh sandbox and interpreter for every program, run on a
  smaller batch (`--per-program-n`), since it is the slow way: it shows why batching matters.

Every program must come back `correct`; the table gives programs/s and the ratio to bare.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tpt_stages.records import TestCase, Verdict
from tpt_stages.sandbox import Limits, ProgramJob, available_backends, run_batch
from tpt_stages.sandbox.backends import HARNESS_ENV, PYTHON, wrap

# Short contest-style programs: read the input, compute a little, print; half of them import what contest
# programs commonly import.
TEMPLATES = [
    ("a, b = map(int, input().split())\nprint(a + b + {k})", lambda k: ("3 4\n", f"{7 + k}")),
    ("import sys\nn = int(sys.stdin.readline())\nprint(sum(i * i for i in range(n)) % {m})", lambda k: ("100\n", f"{328350 % (k + 7)}")),
    ("from collections import Counter\ns = input().strip()\nprint(Counter(s * {r})['a'])", lambda k: ("abca\n", f"{2 * (k % 3 + 1)}")),
    ("import heapq, math\nxs = list(map(int, input().split()))\nprint(*heapq.nsmallest({t}, xs), math.gcd(*xs))", lambda k: ("5 3 9 1 7\n", " ".join(map(str, [1, 3, 5, 7, 9][: k % 5 + 1])) + " 1")),
]  # fmt: skip


def batch(n: int) -> list[ProgramJob]:
    jobs = []
    for k in range(n):
        source, io = TEMPLATES[k % len(TEMPLATES)]
        stdin, expected = io(k)
        program = source.format(k=k, m=k + 7, r=k % 3 + 1, t=k % 5 + 1)
        jobs.append(ProgramJob(program, [TestCase(input=stdin, output=expected)]))
    return jobs


def run_wrapped(jobs: list[ProgramJob], backend: str | None, python: tuple[str, ...] = (PYTHON, "-I", "-S")) -> float:
    """Each program in its own interpreter (and its own sandbox unless `backend` is None); returns seconds."""

    def one(job: ProgramJob) -> None:
        argv = [*python, "-c", job.program]
        argv = wrap(backend, argv) if backend else argv
        done = subprocess.run(argv, input=job.tests[0].input.encode(), capture_output=True, env=HARNESS_ENV, timeout=60)
        if done.stdout.decode().split() != job.tests[0].output.split():
            raise AssertionError(f"{backend or 'bare'}: {job.program!r} printed {done.stdout!r} {done.stderr[-300:]!r}")

    start = time.monotonic()
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        list(pool.map(one, jobs))
    return time.monotonic() - start


def run_harness(jobs: list[ProgramJob], backend: str) -> float:
    start = time.monotonic()
    results, _ = run_batch(jobs, Limits(timeout_seconds=10.0), backend=backend)
    took = time.monotonic() - start
    bad = [(j.program, r) for j, r in zip(jobs, results, strict=True) if r.verdict is not Verdict.correct]
    if bad:
        raise AssertionError(f"{backend}: {len(bad)} programs not correct, e.g. {bad[0]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="programs in the batch (default: 1000)")
    parser.add_argument("--per-program-n", type=int, default=40, help="programs for one-sandbox-per-program")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--backends", help="comma-separated backends to measure (default: every one that works)")
    args = parser.parse_args()
    jobs, few = batch(args.n), batch(args.per_program_n)
    backends = args.backends.split(",") if args.backends else available_backends()
    modes: list[tuple[str, list[ProgramJob], Callable[[list[ProgramJob]], float]]] = [
        (f"bare 1: `{PYTHON} -I -S`", jobs, lambda js: run_wrapped(js, None))
    ]
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(debian) != PYTHON:
        modes.append((f"bare 2: `{debian} -I`", jobs, lambda js: run_wrapped(js, None, (debian, "-I"))))
    for backend in ("unsafe", "bwrap", "userns", "runsc"):
        if backend in backends:
            modes.append((f"harness, {backend}", jobs, lambda js, b=backend: run_harness(js, b)))
    for backend in ("bwrap", "runsc"):
        if backend in backends:
            modes.append((f"one {backend} per program", few, lambda js, b=backend: run_wrapped(js, b)))
    # Round-robin over the modes, a slice of the batch each, so that the load of a shared machine falls on
    # every mode alike. Each harness slice is its own run_batch: start-up is paid once per round.
    seconds = [0.0] * len(modes)
    for r in range(args.rounds):
        for i, (_, batch_jobs, run) in enumerate(modes):
            seconds[i] += run(batch_jobs[r :: args.rounds])
    rates = [len(m[1]) / t for m, t in zip(modes, seconds, strict=True)]
    cpus = len(os.sched_getaffinity(0))
    print(
        f"{platform.node()}: {cpus} CPUs, {platform.machine()}, Python {platform.python_version()}, {args.rounds} rounds"
    )
    bare = rates[:2] if modes[1][0].startswith("bare") else rates[:1]
    ratios = " | ".join(f"vs bare {i + 1}" for i in range(len(bare)))
    print(f"| how | programs | seconds | programs/s | {ratios} |")
    print("|---|---:|---:|---:|" + "---:|" * len(bare))
    for (name, batch_jobs, _), t, rate in zip(modes, seconds, rates, strict=True):
        vs = " | ".join(f"{rate / b:.2f}×" for b in bare)
        print(f"| {name} | {len(batch_jobs)} | {t:.1f} | {rate:.1f} | {vs} |")


if __name__ == "__main__":
    main()
