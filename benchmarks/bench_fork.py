"""The platform bound of the sandbox: what one fork costs, bare and under gVisor.

    .venv/bin/python benchmarks/bench_fork.py [--n 100]

The harness forks the zygote once per test, so a fork of a warm Python interpreter is the floor of a test's
cost. This times `fork()` + `_exit()` + `waitpid()` in a loop, in the harness's interpreter (`-I -S`) with
nothing preloaded and with the zygote's PRELOAD, bare and inside `runsc do` (the sandbox's runsc flags, with
the host's file system instead of the sandbox's minimal view, which does not change what a fork costs); and,
where `cc` exists, a small C program for comparison: what a fork costs when neither side touches memory after
it, and when the child writes to 1,000 or 5,000 pages of its parent's heap (copy-on-write).

    python benchmarks/bench_fork.py --namespaces [--n 100]     # inside the verify pod (docs/benchmarks.md)

`--namespaces` instead times, in this process, what the `userns` zygote does per test against a plain fork:
after its user and network namespaces and with its PRELOAD, `fork_into(CLONE_NEWPID | CLONE_NEWIPC)` and
`os.fork()`, interleaved over three rounds. Run it where `userns` works: not as root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from tpt_stages.sandbox import available_backends
from tpt_stages.sandbox.backends import HARNESS_ENV, PYTHON, SOURCE_ROOT

RUNSC = ["bwrap", "--dev-bind", "/", "/", "--", "runsc", "--network=none", "--ignore-cgroups", "do", "-quiet"]

PY_LOOP = """
import ctypes, importlib, os, sys, time, gc
sys.path.insert(0, {root!r})
from tpt_stages.sandbox.zygote import PRELOAD
if {preload}:
    for m in PRELOAD:
        importlib.import_module(m)
    gc.freeze()
libc = ctypes.CDLL(None)
t = time.perf_counter()
for _ in range({n}):
    pid = libc.fork()
    if pid == 0:
        libc._exit(0)
    os.waitpid(pid, 0)
maps = len(open("/proc/self/maps").readlines())
print(f"{{(time.perf_counter() - t) / {n} * 1000:.2f}} {{maps}}")
"""

C_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
  size_t mb = atoi(argv[1]), touch = atoi(argv[2]); struct timespec a, b; int n = %d; char line[256]; int maps = 0;
  char *heap = malloc((mb << 20) + 1); memset(heap, 1, mb << 20);
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) { for (size_t k = 0; k < touch; k++) heap[k * 4096] = 2; _exit(0); }
    waitpid(pid, 0, 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  FILE *f = fopen("/proc/self/maps", "r"); while (fgets(line, sizeof line, f)) maps++;
  printf("%%.2f %%d\n", ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6) / n, maps);
  return 0;
}
"""


def timed(argv: list[str], backend: str | None) -> tuple[str, str]:
    argv = [*RUNSC, *argv] if backend else argv
    # A pipe, not a file: runsc's output to a shared regular file overwrites other writers.
    out = subprocess.run(argv, env=HARNESS_ENV, capture_output=True, check=True, timeout=600)
    ms, maps = out.stdout.decode().split()
    return ms, maps


def fork_into_namespaces(n: int) -> None:
    import gc
    import importlib
    import time

    from tpt_stages.sandbox import namespaces
    from tpt_stages.sandbox.zygote import PRELOAD

    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()
    namespaces.enter_user_namespace(namespaces.CLONE_NEWNET)  # as the zygote starts
    forks = {
        "os.fork()": os.fork,
        "fork_into(NEWPID, NEWIPC)": lambda: namespaces.fork_into(namespaces.CLONE_NEWPID | namespaces.CLONE_NEWIPC),
    }
    print(f"{n} forks each, Python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} CPUs")
    print("| round | fork | ms/fork |\n|---:|---|---:|")
    for round_ in range(3):
        for label, fork in forks.items():
            start = time.perf_counter()
            for _ in range(n):
                pid = fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
            print(f"| {round_ + 1} | {label} | {(time.perf_counter() - start) / n * 1000:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="forks per measurement (default: 100)")
    parser.add_argument("--namespaces", action="store_true", help="time the userns zygote's fork (not as root)")
    args = parser.parse_args()
    if args.namespaces:
        fork_into_namespaces(args.n)
        return
    where = [None] + (["runsc"] if "runsc" in available_backends() else [])
    rows = []
    for label, preload in (
        ("Python `-I -S`, nothing preloaded", False),
        ("Python `-I -S`, the zygote's PRELOAD", True),
    ):
        code = PY_LOOP.format(root=SOURCE_ROOT, preload=preload, n=args.n)
        rows.append((label, [timed([PYTHON, "-I", "-S", "-c", code], b) for b in where]))
    cc = shutil.which("cc")
    if cc:
        with tempfile.TemporaryDirectory() as tmp:
            src, exe = os.path.join(tmp, "fork.c"), os.path.join(tmp, "fork")
            with open(src, "w") as f:
                f.write(C_LOOP % args.n)
            subprocess.run([cc, "-O2", "-o", exe, src], check=True)
            for label, mb, touch in (
                ("C, libc only", "0", "0"),
                ("C, child writes 1,000 pages of a 50 MB heap", "50", "1000"),
                ("C, child writes 5,000 pages of a 50 MB heap", "50", "5000"),
            ):
                rows.append((label, [timed([exe, mb, touch], b) for b in where]))
    print(f"{args.n} forks each, Python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} CPUs")
    print("| process | mappings | bare ms/fork | " + " | ".join(f"{b} ms/fork" for b in where[1:]) + " |")
    print("|---|---:|---:|" + "---:|" * (len(where) - 1))
    for label, results in rows:
        print(f"| {label} | {results[-1][1]} | " + " | ".join(ms for ms, _ in results) + " |")


if __name__ == "__main__":
    main()
