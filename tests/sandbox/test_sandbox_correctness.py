"""The correctness set: a small CodeContests-style problem set (statements, tests, right and wrong solutions)
gets exactly the expected verdicts and soft-positive counts (tests passed) under every backend, through the
public `run_batch`."""

from __future__ import annotations

import textwrap

import pytest

from tpt_stages.records import TestCase, Verdict
from tpt_stages.sandbox import Limits, ProgramJob, available_backends, run_batch
from tpt_stages.sandbox import session as sandbox_session

LIMITS = Limits(timeout_seconds=2.0, memory_mb=256)


def cases(*pairs: tuple[str, str]) -> list[TestCase]:
    return [TestCase(input=i, output=o) for i, o in pairs]


PROBLEMS = {
    # Sum of n integers.
    "sum": cases(("3\n1 2 3\n", "6\n"), ("2\n5 0\n", "5\n"), ("4\n-1 -1 -1 10\n", "7\n")),
    # How many primes are <= N? The last test is too big for trial division within the time limit.
    "primes": cases(("10\n", "4\n"), ("100\n", "25\n"), ("3000000\n", "216816\n")),
    # The area of a circle of radius r: any printout within 1e-5 is right.
    "circle": cases(("1\n", "3.14159265\n"), ("2.5\n", "19.63495408\n")),
    # a // b, or "undefined" when b is 0.
    "divide": cases(("7 2\n", "3\n"), ("9 0\n", "undefined\n"), ("-8 3\n", "-3\n"), ("0 5\n", "0\n")),
    # 1 + 2 + ... + n for n up to 10^9.
    "triangle": cases(("4\n", "10\n"), ("987654321\n", "487730529388812681\n")),
    # The grid n x n of i*j, one row per line.
    "table": cases(("2\n", "1 2\n2 4\n"), ("3\n", "1 2 3\n2 4 6\n3 6 9\n")),
}

# (problem, solution name, program, verdict, tests passed)
SOLUTIONS = [
    ("sum", "right", "input()\nprint(sum(map(int, input().split())))", "correct", 3),
    ("sum", "drops the last number", "input()\nprint(sum(list(map(int, input().split()))[:-1]))", "wrong", 1),
    ("sum", "no output", "pass", "wrong", 0),
    ("sum", "ends with exit()", "input()\nprint(sum(map(int, input().split())))\nexit()", "correct", 3),
    (
        "primes",
        "sieve",
        """
        n = int(input())
        sieve = bytearray([1]) * (n + 1)
        sieve[:2] = b"\\0\\0"
        for i in range(2, int(n ** 0.5) + 1):
            if sieve[i]:
                sieve[i * i :: i] = bytes(len(range(i * i, n + 1, i)))
        print(sum(sieve))
        """,
        "correct",
        3,
    ),
    (
        "primes",
        "trial division",
        """
        n = int(input())
        print(sum(all(k % d for d in range(2, int(k ** 0.5) + 1)) for k in range(2, n + 1)))
        """,
        "timeout",
        2,
    ),
    ("circle", "full precision", "import math\nprint(math.pi * float(input()) ** 2)", "correct", 2),
    ("circle", "six decimals", "import math\nprint(f'{math.pi * float(input()) ** 2:.6f}')", "correct", 2),
    ("circle", "rounded to two places", "import math\nprint(round(math.pi * float(input()) ** 2, 2))", "wrong", 0),
    (
        "divide",
        "right",
        """
        a, b = map(int, input().split())
        print("undefined" if b == 0 else a // b)
        """,
        "correct",
        4,
    ),
    ("divide", "crashes on zero", "a, b = map(int, input().split())\nprint(a // b)", "runtime_error", 3),
    (
        "divide",
        "truncates toward zero",
        """
        a, b = map(int, input().split())
        print("undefined" if b == 0 else int(a / b))
        """,
        "wrong",
        3,
    ),
    ("triangle", "formula", "n = int(input())\nprint(n * (n + 1) // 2)", "correct", 2),
    (
        "triangle",
        "a buffer of n bytes",
        "n = int(input())\nb = bytearray(n)\nprint(n * (n + 1) // 2)",
        "memory_limit",
        1,
    ),
    # Integers compare exactly: ...672 is within 1e-5 of ...681 relatively, and still the wrong answer.
    ("triangle", "float formula", "n = int(input())\nprint(int(n * (n + 1) / 2))", "wrong", 1),
    (
        "table",
        "right, odd spacing",
        """
        n = int(input())
        for i in range(1, n + 1):
            print("  ".join(str(i * j) for j in range(1, n + 1)), end=" \\n\\n")
        """,
        "correct",
        2,
    ),
    (
        "table",
        "transposed wrongly",
        "n = int(input())\nprint(' '.join(str(i) for i in range(1, n * n + 1)))",
        "wrong",
        0,
    ),
    ("table", "does not compile", "for i in range(:\n", "runtime_error", 0),
]


@pytest.fixture(scope="module", params=available_backends())
def graded(request):
    jobs = [ProgramJob(textwrap.dedent(program).strip() + "\n", PROBLEMS[p]) for p, _, program, _, _ in SOLUTIONS]
    results, backend = run_batch(jobs, LIMITS, backend=request.param)
    assert backend == request.param
    return dict(zip([(p, name) for p, name, *_ in SOLUTIONS], results, strict=True))


@pytest.mark.parametrize(("problem", "name", "verdict", "passed"), [(p, n, v, k) for p, n, _, v, k in SOLUTIONS])
def test_solution(graded, problem, name, verdict, passed):
    result = graded[problem, name]
    assert (result.verdict, result.tests_passed, result.tests_total) == (
        Verdict(verdict),
        passed,
        len(PROBLEMS[problem]),
    ), result


def test_results_come_back_in_order_and_say_which_backend():
    jobs = [ProgramJob(f"print({i})", cases(("", f"{i}\n"))) for i in range(7)]
    results, backend = run_batch(jobs, LIMITS, backend="unsafe")
    assert backend == "unsafe"
    assert [r.verdict for r in results] == [Verdict.correct] * 7
    assert [r.stdout_tail for r in results] == [f"{i}\n" for i in range(7)]


def test_a_broken_harness_is_an_infra_error_not_a_wrong_answer(monkeypatch):
    """verl scores a sandbox failure as a wrong answer; we must not: infra_error is retried by verify."""
    monkeypatch.setattr(sandbox_session, "harness_command", lambda backend, limits: ["/bin/false"])
    results, _ = run_batch([ProgramJob("print(1)", cases(("", "1")))] * 3, LIMITS, backend="unsafe")
    assert [r.verdict for r in results] == [Verdict.infra_error] * 3
    assert all("harness" in r.detail for r in results)


def test_per_job_time_limit_overrides_the_default():
    slow = "import time\ntime.sleep(0.6)\nprint(1)"
    jobs = [ProgramJob(slow, cases(("", "1"))), ProgramJob(slow, cases(("", "1")), timeout_seconds=0.3)]
    results, _ = run_batch(jobs, Limits(timeout_seconds=3.0), backend="unsafe")
    assert [r.verdict for r in results] == [Verdict.correct, Verdict.timeout]


def test_a_failing_program_stops_at_its_first_failure_unless_every_test_is_counted():
    """What verify does unless soft-positive pruning needs the count: the verdict is known at the first
    failure, and the tests after it would each cost a fork."""
    # The tests after the first take a second each, so whether they ran shows in the time by a wide margin
    # (comparing two runs of ~60 ms each flaked on CI's loaded machine).
    first_wrong = "import time\nn = int(input())\nif n > 1: time.sleep(1)\nprint(n if n > 1 else -1)"
    tests = cases(("1\n", "1"), ("2\n", "2"), ("3\n", "3"))
    jobs = [ProgramJob(first_wrong, tests), ProgramJob(first_wrong, tests, every_test=False)]
    results, _ = run_batch(jobs, LIMITS, backend="bwrap")
    assert [(r.verdict, r.tests_passed, r.tests_total) for r in results] == [
        (Verdict.wrong, 2, 3),
        (Verdict.wrong, 0, 3),
    ]
    assert all(r.detail.startswith("test 1/3: expected '1'") for r in results)
    assert results[1].seconds < 1 and results[0].seconds >= 2  # one test run, not three
