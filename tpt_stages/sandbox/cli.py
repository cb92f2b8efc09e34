"""`tpt sandbox`: run one program the way the verify stage would, to debug a task's tests or a suspicious sample.

    tpt sandbox run solution.py --tests tests.json          # a JSON list or JSONL of {"input", "output"}
    tpt sandbox run solution.py --stdin in.txt --expected out.txt --backend bwrap --timeout 2
    {"verdict": "correct", "backend": "runsc", "seconds": 0.04, "tests_passed": 1, "tests_total": 1, ...}
    tpt sandbox check                                       # which backends run a program here

Without tests the program runs once on empty input, and any output is accepted as long as it exits cleanly
(verdict `correct` then only means "ran"): useful to see what a program does under the limits. `run` exits 1
when the verdict is `infra_error` (the sandbox failed, not the program), 2 on a usage error.

`check` runs a small program on a test under every backend, through the same path the verify stage takes
(`run_batch`), so "works" means a program really ran; it exits 1 when the backend `auto` picks cannot run it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tpt_stages.records import TestCase
from tpt_stages.sandbox.backends import BACKENDS, SandboxUnavailable


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sandbox", help="run a program in the code sandbox, or list the sandbox backends")
    sub = p.add_subparsers(dest="sandbox_command", required=True)
    r = sub.add_parser("run", help="run one program on its tests and print its verdict as one JSON line")
    r.add_argument("program", help="a Python 3 program that reads stdin and writes stdout")
    r.add_argument("--tests", help="JSON list, or JSONL rows, of {input, output} test cases")
    r.add_argument("--stdin", help="one test: the file fed to the program on stdin")
    r.add_argument("--expected", help="one test: the file with the expected output")
    r.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="default: auto (runsc, bwrap)")
    r.add_argument("--timeout", type=float, default=4.0, help="seconds per test (default: 4)")
    r.add_argument("--memory-mb", type=int, default=512, help="address-space limit per test (default: 512)")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check", help="run a test program under every sandbox backend and say which work here")
    c.set_defaults(func=cmd_check)


def cmd_run(args: argparse.Namespace) -> int:
    from tpt_stages.sandbox import Limits, ProgramJob, run_batch

    try:
        program = Path(args.program).read_text()
        tests, any_output = _tests(args)
    except (OSError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        print(f"tpt sandbox run: error: {e}", file=sys.stderr)
        return 2
    try:
        (result,), backend = run_batch(
            [ProgramJob(program, tests)], Limits(timeout_seconds=args.timeout, memory_mb=args.memory_mb), args.backend
        )
    except SandboxUnavailable as e:
        print(f"tpt sandbox run: error: {e}", file=sys.stderr)
        return 2
    verdict = result.verdict.value
    if any_output and verdict == "wrong":
        verdict, passed, detail = "correct", 1, None
    else:
        passed, detail = result.tests_passed, result.detail
    line = {
        "verdict": verdict,
        "backend": backend,
        "seconds": result.seconds,
        "tests_passed": passed,
        "tests_total": result.tests_total,
        "detail": detail,
        "stdout_tail": result.stdout_tail,
    }
    print(json.dumps(line))
    return 1 if verdict == "infra_error" else 0


# What `check` runs: a program that reads its input, on one test, as the verify stage runs a sample.
_CHECK_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
_CHECK_TEST = TestCase(input="20 22\n", output="42\n")


_ONLY_WHEN_ASKED = {
    "userns": " (only when asked for: inside a pod's isolation)",
    "unsafe": " (only when asked for: no isolation)",
}


def cmd_check(args: argparse.Namespace) -> int:
    from tpt_stages.sandbox import Limits, ProgramJob, run_batch
    from tpt_stages.sandbox.backends import resolve

    try:
        auto = resolve("auto")
    except SandboxUnavailable as e:
        auto, why_no_auto = None, str(e)
    auto_works = False
    for backend in BACKENDS:
        note = " (auto)" if backend == auto else _ONLY_WHEN_ASKED.get(backend, "")
        try:
            (result,), _ = run_batch([ProgramJob(_CHECK_PROGRAM, [_CHECK_TEST])], Limits(), backend)
        except SandboxUnavailable as e:
            print(f"{backend}: unavailable{note}: {e}")
            continue
        if result.verdict.value == "correct":
            print(f"{backend}: works{note}")
            auto_works = auto_works or backend == auto
        else:
            detail = " ".join((result.detail or "").split())  # one line, however many the harness's stderr had
            print(f"{backend}: broken{note}: a test program got {result.verdict.value}: {detail}")
    if auto is None:
        print(f"auto: {why_no_auto}")
    return 0 if auto_works else 1


def _tests(args: argparse.Namespace) -> tuple[list[TestCase], bool]:
    """The tests from --tests or --stdin/--expected, and whether any output is to be accepted (no expected
    output given: the program's output is then compared with nothing, and `wrong` only means "it printed")."""
    if args.tests:
        if args.stdin or args.expected:
            raise ValueError("give either --tests or --stdin/--expected")
        text = Path(args.tests).read_text()
        try:
            rows = json.loads(text)
        except ValueError:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        tests = [TestCase.model_validate(row) for row in (rows if isinstance(rows, list) else [rows])]
        if not tests:
            raise ValueError(f"{args.tests}: no test cases")
        return tests, False
    stdin = Path(args.stdin).read_text() if args.stdin else ""
    expected = Path(args.expected).read_text() if args.expected else ""
    return [TestCase(input=stdin, output=expected)], args.expected is None
