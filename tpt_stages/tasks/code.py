"""The `code` task: CodeContests-style problems graded by running the model's program on input/output tests.

Two problem formats share one grader:

- stdin/stdout problems (CodeContests): the prompt asks for a complete Python 3 program; each test feeds its
  input on stdin and compares stdout.
- function problems (HumanEval): the prompt shows a signature and docstring and asks for the finished
  function. Such a problem carries a `harness` in `meta` (built by `function_harness`): a fixed program that
  reads a pass token from stdin, defines the model's code, runs the problem's `check`, and prints the token
  if every assertion holds. That turns a function test into one stdin/stdout test (input: the token,
  expected output: the token), so the same sandbox grades both formats.

The sandbox is imported only when there is a program to run, so that sampling (which only renders prompts)
does not need it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tpt_stages.records import Grade, Problem, Verdict
from tpt_stages.spec import Task as TaskSpec

PROGRAM_PROMPT = (
    "Solve the following programming problem in Python 3. Think step by step about an algorithm that is "
    "correct and fast enough for the limits, then write one complete program that reads the input from "
    "standard input and writes the answer to standard output. Put the whole program in a single ```python "
    "code block at the end of your answer.\n\n"
    "{question}"
)
FUNCTION_PROMPT = (
    "Complete the Python function below. Think step by step about what it must do, then write the complete "
    "code (the imports, any helper functions given below, and the finished function) in a single ```python "
    "code block at the end of your answer. The code must only define things: it must not read input or "
    "print.\n\n"
    "```python\n{question}\n```"
)

# For the built-in generator's problems (task.generator): short, because they are for tiny models with small
# contexts, where every prompt token costs training and sampling time.
GENERATED_PROMPT = "{question}\nWrite the program in a ```python block."

HARNESS_KEY = "harness"
# The least time a reference-timed limit allows: the reference's runtime is one noisy measurement (a fork and
# the setup cost ~40 ms under gVisor, more on a loaded node), and a limit must not fail a program for noise.
REFERENCE_FLOOR_SECONDS = 1.0
_CANDIDATE = "__TPT_CANDIDATE__"

# Why exec instead of appending the check to the model's code: the model's prints and its `__main__` block
# (it may test its own function) must not disturb stdout. The token comes on stdin, read before the model's
# code runs, so that it is neither in the program text nor readable by the model's code: a program that
# prints something and exits early cannot pass. (Code that deliberately inspects the harness's frames could
# still forge it, as it could in HumanEval's own checker; the sandbox, not the harness, is the security
# boundary.) Assertion failures print a wrong answer (verdict `wrong`); any other exception exits non-zero
# (`runtime_error`), as a crashing stdin/stdout program would.
_HARNESS = """\
_candidate = __TPT_CANDIDATE__
import contextlib, io, sys
_token = sys.stdin.read().strip()
_ns = {{"__name__": "__candidate__"}}
with contextlib.redirect_stdout(io.StringIO()):
    exec(compile(_candidate, "<candidate>", "exec"), _ns)
    exec(compile({check!r}, "<check>", "exec"), _ns)
    try:
        _ns["check"](_ns[{entry_point!r}])
        _passed = True
    except AssertionError:
        _passed = False
print(_token if _passed else "assertion failed")
"""

# A fenced block: an opening fence with an optional language tag, the body, a closing fence (both fences at
# the start of a line). A block left open (the sample hit max_tokens) does not count: it is usually cut off.
_FENCE = re.compile(r"^ {0,3}```[ \t]*([^\s`]*)[^\n]*\n(.*?)^ {0,3}```", re.MULTILINE | re.DOTALL)
_PYTHON_TAGS = frozenset({"python", "python3", "py", "py3"})


def extract_program(completion: str) -> str | None:
    """The program in a completion: the last ```python block, else the first fenced block; None if there is
    no non-empty closed block. The last python block, because models often draft and then correct."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(completion) if body.strip()]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    if python:
        return python[-1]
    return blocks[0][1] if blocks else None


def function_harness(check: str, entry_point: str) -> str:
    """The harness of a function problem: `check` (code defining `check(candidate)`) is run on the function
    `entry_point` of the model's code; the program echoes its stdin if and only if every assertion holds."""
    return _HARNESS.format(check=check, entry_point=entry_point)


def program_for(problem: Problem, code: str) -> str:
    """What the sandbox runs for `code`: the code itself, or the problem's harness around it."""
    harness = problem.meta.get(HARNESS_KEY)
    if harness is None:
        return code
    return harness.replace(_CANDIDATE, repr(code), 1)


class CodeTask:
    """The task plugin (see tasks/base.py). One sandbox batch per `grade` call."""

    name = "code"
    graders: tuple[str, ...] = ("tests",)

    def __init__(self, task_spec: TaskSpec, *, backend: str = "auto", count_every_test: bool = False) -> None:
        self.template = task_spec.prompt_template or (GENERATED_PROMPT if task_spec.generated else None)
        self.test_timeout_seconds = task_spec.test_timeout_seconds
        self.memory_mb = task_spec.memory_mb
        self.backend = backend
        # Without it a failing program's `tests_passed` counts the tests before its first failure only.
        self.count_every_test = count_every_test
        self.reference_multiple = task_spec.reference_time_multiple
        #: the sandbox backend that ran the last batch (verify records it: `bare` is not isolation)
        self.backend_used: str | None = None
        #: problem id -> time limit from its reference solution, None where the reference failed (then the
        #: usual limit applies); measured once per problem and process
        self.reference_limits: dict[str, float | None] = {}

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        default = FUNCTION_PROMPT if HARNESS_KEY in problem.meta else PROGRAM_PROMPT
        template = self.template or default
        # str.replace, not str.format: problem statements and code are full of braces.
        return [{"role": "user", "content": template.replace("{question}", problem.question)}]

    def reference_completion(self, problem: Problem) -> str | None:
        if problem.solution is None:
            return None
        return f"```python\n{problem.solution.rstrip()}\n```"

    def grade(self, pairs: Sequence[tuple[Problem, str]]) -> list[dict[str, Grade]]:
        grades: dict[int, Grade] = {}
        todo: list[tuple[int, Problem, str]] = []  # (position, problem, program) for the sandbox
        for i, (problem, completion) in enumerate(pairs):
            if not problem.tests:
                raise ValueError(f"code problem {problem.id!r} has no tests")
            code = extract_program(completion)
            if code is None:
                grades[i] = Grade(verdict=Verdict.no_answer, tests_passed=0, tests_total=len(problem.tests))
            else:
                todo.append((i, problem, program_for(problem, code)))
        if todo:
            from tpt_stages.sandbox import Limits, ProgramJob, run_batch

            limits = Limits(timeout_seconds=self.test_timeout_seconds, memory_mb=self.memory_mb)
            if self.reference_multiple is not None:
                self._time_references([p for _, p, _ in todo], limits)
            jobs = [ProgramJob(c, p.tests, self._timeout(p), every_test=self.count_every_test) for _, p, c in todo]
            results, self.backend_used = run_batch(jobs, limits, backend=self.backend)
            for (i, _, _), r in zip(todo, results, strict=True):
                grades[i] = Grade(
                    verdict=Verdict(r.verdict),
                    tests_passed=r.tests_passed,
                    tests_total=r.tests_total,
                    detail=r.detail,
                )
        return [{"tests": grades[i]} for i in range(len(pairs))]

    def _time_references(self, problems: Sequence[Problem], limits) -> None:
        """Run the reference solution of every problem not timed yet, under the usual limits, and derive its
        time limit from the slowest test. A reference that fails (CodeContests ships some wrong ones, and
        its limits are for C++) leaves the problem on the usual limit."""
        from tpt_stages.sandbox import ProgramJob, run_batch

        todo = {p.id: p for p in problems if p.solution is not None and p.id not in self.reference_limits}
        if not todo:
            return
        jobs = [
            ProgramJob(program_for(p, p.solution or ""), p.tests, self._usual_timeout(p), every_test=False)
            for p in todo.values()
        ]
        results, _ = run_batch(jobs, limits, backend=self.backend)
        for p, r in zip(todo.values(), results, strict=True):
            if r.verdict is Verdict.correct:
                limit = max(REFERENCE_FLOOR_SECONDS, self.reference_multiple * r.slowest_test_seconds)
                self.reference_limits[p.id] = min(limit, self._usual_timeout(p))
            elif r.verdict is not Verdict.infra_error:  # an infra error is measured again next batch
                self.reference_limits[p.id] = None

    def _timeout(self, problem: Problem) -> float:
        limit = self.reference_limits.get(problem.id)
        return limit if limit is not None else self._usual_timeout(problem)

    def _usual_timeout(self, problem: Problem) -> float:
        # CodeContests time limits are set for C++ (often 1-2 s); the spec's per-test time is the floor, so
        # that Python is not failed for its speed, and a problem that states a longer limit gets it.
        return max(self.test_timeout_seconds, problem.time_limit_seconds or 0.0)
