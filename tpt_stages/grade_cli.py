"""`tpt grade`: grade completions exactly as a run would.

One completion, printed as one JSON line:

    tpt grade --task math --gold 1600 --completion-file answer.txt
    {"strict": {"verdict": "wrong", "answer": "1,600"}, "normalized": {"verdict": "correct", "answer": "1600"}}

Or a whole file of samples from anywhere (see sample_file.py for the row formats), scored with the score
stage's metrics (Pass@1, Pass@k, Correct@k per grader, grader disagreements):

    tpt grade --task math --samples samples.jsonl [--json] [--verdicts verdicts.jsonl] [--k K]

Completions go through the task plugin's `grade` with the verify stage's retries, so the verdicts are what a
run would record. Code completions run in the sandbox against `--tests` (JSONL rows `{"input", "output"}`),
or, with `--samples`, against each row's `tests`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from tpt_stages import sample_file
from tpt_stages.metrics import disagreements, grader_metrics, verdict_counts
from tpt_stages.records import Grade, Problem, TestCase, Verdict
from tpt_stages.spec import Dataset, Task, TaskKind

# The task spec wants datasets for math and code; grading never reads them.
_UNUSED = Dataset(uri="unused")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = Task(kind=TaskKind.arith)
    p = subparsers.add_parser("grade", help="grade one completion and print each grader's verdict as JSON")
    p.add_argument("--task", required=True, choices=[k.value for k in TaskKind])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--completion-file", help="one completion; '-' reads stdin")
    what.add_argument(
        "--samples", help="JSONL file of samples: {problem, completion, gold} or {problem, completion, tests}"
    )
    p.add_argument("--json", action="store_true", help="--samples: print one JSON object instead of a table")
    p.add_argument("--verdicts", help="--samples: write every sample's grades (all graders) to this JSONL file")
    p.add_argument("--k", type=int, help="--samples: k of Pass@k and Correct@k (default: samples per problem)")
    p.add_argument("--gold", help="math/arith: the gold answer, as the dataset writes it")
    p.add_argument("--tests", help="code: JSONL file of {input, output} test cases")
    p.add_argument("--backend", default="auto", help="code: sandbox backend (default: auto)")
    p.add_argument("--timeout", type=float, default=defaults.test_timeout_seconds, help="code: seconds per test")
    p.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="code: memory limit per program")
    p.set_defaults(func=cmd_grade)


def cmd_grade(args: argparse.Namespace) -> int:
    if args.samples is not None:
        return _grade_samples(args)
    try:
        completion = sys.stdin.read() if args.completion_file == "-" else Path(args.completion_file).read_text()
        kind = TaskKind(args.task)
        if kind is TaskKind.code:
            if not args.tests:
                raise _UsageError("--task code needs --tests FILE.jsonl")
            problem = Problem(id="cli", question="", tests=_read_tests(Path(args.tests)))
        else:
            if args.gold is None:
                raise _UsageError(f"--task {kind.value} needs --gold")
            problem = Problem(id="cli", question="", answer=args.gold)
        task_spec = _task_spec(kind, args)
    except (_UsageError, OSError, ValidationError) as e:
        print(f"tpt grade: error: {e}", file=sys.stderr)
        return 2
    from tpt_stages.stages.verify import grade_pairs
    from tpt_stages.tasks import get_task

    task = get_task(task_spec, sandbox_backend=args.backend)
    (grades,) = grade_pairs(task, task.graders[0], [(problem, completion)])
    print(json.dumps({name: _summary(grades[name]) for name in task.graders}))
    return 0


def _task_spec(kind: TaskKind, args: argparse.Namespace) -> Task:
    if kind is TaskKind.arith:
        return Task(kind=kind)
    if kind is TaskKind.code:
        return Task(kind=kind, train=_UNUSED, test=_UNUSED, test_timeout_seconds=args.timeout, memory_mb=args.memory_mb)
    return Task(kind=kind, train=_UNUSED, test=_UNUSED)


def _grade_samples(args: argparse.Namespace) -> int:
    kind = TaskKind(args.task)
    try:
        if args.gold is not None or args.tests is not None:
            raise _UsageError("--samples takes the gold answers or tests from its rows, not --gold/--tests")
        if args.k is not None and args.k < 1:
            raise _UsageError("--k must be at least 1")
        # Before grading, which may take minutes of sandbox time, not after.
        if args.verdicts and not Path(args.verdicts).resolve().parent.is_dir():
            raise _UsageError(f"--verdicts {args.verdicts}: no such directory")
        path = Path(args.samples)
        with path.open(encoding="utf-8") as f:
            samples = sample_file.read((line.rstrip("\n") for line in f), code=kind is TaskKind.code, name=str(path))
    except (_UsageError, OSError, UnicodeDecodeError, sample_file.SampleFileError) as e:
        print(f"tpt grade: error: {e}", file=sys.stderr)
        return 2
    from tpt_stages.stages.verify import grade_pairs
    from tpt_stages.tasks import get_task

    task = get_task(_task_spec(kind, args), sandbox_backend=args.backend)
    pairs = [(samples.problems[s.problem_id], s.completion) for s in samples.samples]
    for s, grades in zip(samples.samples, grade_pairs(task, task.graders[0], pairs), strict=True):
        s.grades = grades
    fewest, most = samples.samples_per_problem
    k = args.k or fewest
    result = {
        "file": str(path),
        "task": kind.value,
        "fields": samples.fields.describe(),
        "problems": len(samples.problems),
        "samples": len(samples.samples),
        "samples_per_problem": fewest if fewest == most else [fewest, most],
        "k": k,
        "graders": {
            g: {**m, "verdicts": verdict_counts(samples.samples, g)}
            for g, m in grader_metrics(samples.samples, task.graders, k).items()
        },
        "disagreements": disagreements(samples.samples, task.graders),
    }
    backend = getattr(task, "backend_used", None)
    if backend:
        result["sandbox"] = backend
    if args.verdicts:
        Path(args.verdicts).write_text("".join(json.dumps(s.verdict_row()) + "\n" for s in samples.samples))
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    k, per = result["k"], result["samples_per_problem"]
    per_text = f"{per[0]}–{per[1]}" if isinstance(per, list) else str(per)
    fields = ", ".join(f"{part} ← {name}" for part, name in result["fields"].items())
    verdicts = [v.value for v in Verdict if any(v.value in m["verdicts"] for m in result["graders"].values())]
    table = Table()
    for header in ["grader", "Pass@1 %", f"Pass@{k} %", f"Correct@{k} %", *verdicts]:
        table.add_column(header, justify="left" if header == "grader" else "right", no_wrap=True)
    for g, m in result["graders"].items():
        pct = [f"{100 * m[key]:.1f}" for key in ("pass1", "passk", "correctk")]
        table.add_row(g, *pct, *(str(m["verdicts"].get(v, 0)) for v in verdicts))
    # Not narrower than the table: rich assumes 80 columns when stdout is not a terminal, and would elide.
    console = Console(soft_wrap=True, markup=False)  # file names may hold `[...]`
    console.width = max(console.width, 160)
    console.print(
        f"{result['file']}: {result['samples']} samples of {result['problems']} problems ({per_text} per problem), k = {k}"
    )
    console.print(table)
    console.print(f"fields read: {fields}")
    if len(result["graders"]) > 1:
        console.print(f"graders disagree on {result['disagreements']} of {result['samples']} samples")
    if "sandbox" in result:
        console.print(f"sandbox: {result['sandbox']}")


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
