"""`tpt grade`: grade one completion by hand, exactly as the verify stage would, and print one JSON line.

    tpt grade --task math --gold 1600 --completion-file answer.txt
    {"strict": {"verdict": "wrong", "answer": "1,600"}, "normalized": {"verdict": "correct", "answer": "1600"}}

The completion goes through the task plugin's `grade`, as in the verify stage, so what this prints is what a
run would record. Code completions run in the sandbox against `--tests` (JSONL rows `{"input", "output"}`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from tpt_stages.records import Grade, Problem, TestCase
from tpt_stages.spec import Dataset, Task, TaskKind

# The task spec wants datasets for math and code; grading never reads them.
_UNUSED = Dataset(uri="unused")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = Task(kind=TaskKind.arith)
    p = subparsers.add_parser("grade", help="grade one completion and print each grader's verdict as JSON")
    p.add_argument("--task", required=True, choices=[k.value for k in TaskKind])
    p.add_argument("--completion-file", required=True, help="the model's completion; '-' reads stdin")
    p.add_argument("--gold", help="math/arith: the gold answer, as the dataset writes it")
    p.add_argument("--tests", help="code: JSONL file of {input, output} test cases")
    p.add_argument("--backend", default="auto", help="code: sandbox backend (default: auto)")
    p.add_argument("--timeout", type=float, default=defaults.test_timeout_seconds, help="code: seconds per test")
    p.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="code: memory limit per program")
    p.set_defaults(func=cmd_grade)


def cmd_grade(args: argparse.Namespace) -> int:
    try:
        completion = sys.stdin.read() if args.completion_file == "-" else Path(args.completion_file).read_text()
        kind = TaskKind(args.task)
        if kind is TaskKind.code:
            if not args.tests:
                raise _UsageError("--task code needs --tests FILE.jsonl")
            task_spec = Task(
                kind=kind,
                train=_UNUSED,
                test=_UNUSED,
                test_timeout_seconds=args.timeout,
                memory_mb=args.memory_mb,
            )
            problem = Problem(id="cli", question="", tests=_read_tests(Path(args.tests)))
        else:
            if args.gold is None:
                raise _UsageError(f"--task {kind.value} needs --gold")
            task_spec = Task(kind=kind) if kind is TaskKind.arith else Task(kind=kind, train=_UNUSED, test=_UNUSED)
            problem = Problem(id="cli", question="", answer=args.gold)
    except (_UsageError, OSError, ValidationError) as e:
        print(f"tpt grade: error: {e}", file=sys.stderr)
        return 2
    from tpt_stages.tasks import get_task

    task = get_task(task_spec, sandbox_backend=args.backend)
    (grades,) = task.grade([(problem, completion)])
    print(json.dumps({name: _summary(grades[name]) for name in task.graders}))
    return 0


class _UsageError(ValueError):
    pass


def _read_tests(path: Path) -> list[TestCase]:
    tests = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tests.append(TestCase.model_validate_json(line))
        except ValidationError as e:
            raise _UsageError(f"{path} line {number}: not a test case ({e.errors()[0]['msg']})") from None
    if not tests:
        raise _UsageError(f"{path}: no test cases")
    return tests


def _summary(grade: Grade) -> dict:
    # verdict and answer always (scripts can rely on the keys), the counts and detail when there are any.
    extra = grade.model_dump(mode="json", exclude_none=True, exclude={"verdict", "answer"})
    return {"verdict": grade.verdict.value, "answer": grade.answer, **extra}
