import subprocess
import sys

import pytest

from tpt_stages.records import Problem, TestCase, Verdict
from tpt_stages.spec import Dataset, TaskKind
from tpt_stages.spec import Task as TaskSpec
from tpt_stages.tasks import get_task
from tpt_stages.tasks.code import (
    FUNCTION_PROMPT,
    HARNESS_KEY,
    PROGRAM_PROMPT,
    CodeTask,
    extract_program,
    function_harness,
    program_for,
)
from tpt_stages.tasks.math import DEFAULT_PROMPT, MathTask

DS = Dataset(uri="unused.jsonl")
MATH = Problem(id="m1", question="Ann has {3} apples and buys 2. How many?", answer="5", solution="3 + 2 = 5\n#### 5")


def spec(kind: TaskKind, **kw) -> TaskSpec:
    return TaskSpec(kind=kind, train=DS, test=DS, **kw)


def test_registry_builds_each_kind():
    assert isinstance(get_task(spec(TaskKind.math)), MathTask)
    code = get_task(spec(TaskKind.code, test_timeout_seconds=2, memory_mb=256), sandbox_backend="bwrap")
    assert isinstance(code, CodeTask)
    assert (code.backend, code.test_timeout_seconds, code.memory_mb) == ("bwrap", 2, 256)
    pytest.importorskip("tpt_stages.tasks.arith")
    assert get_task(TaskSpec(kind=TaskKind.arith)).name == "arith"


def test_math_prompt_is_one_user_message_with_the_question_verbatim():
    (message,) = MathTask(spec(TaskKind.math)).messages(MATH)
    assert message["role"] == "user"
    assert message["content"] == DEFAULT_PROMPT.replace("{question}", MATH.question)
    assert "{3}" in message["content"] and "#### <answer>" in message["content"]


def test_template_override_replaces_only_the_placeholder():
    task = MathTask(spec(TaskKind.math, prompt_template="Q: {question}\nA (end with {{####}}):"))
    assert task.messages(MATH)[0]["content"] == f"Q: {MATH.question}\nA (end with {{{{####}}}}):"


def test_math_records_both_graders_with_the_spec_grader_first():
    assert MathTask(spec(TaskKind.math)).graders == ("strict", "normalized")
    task = MathTask(spec(TaskKind.math, grader="normalized"))
    assert task.graders == ("normalized", "strict")
    (grades,) = task.grade([(MATH.model_copy(update={"answer": "1600"}), "#### 1,600")])
    assert grades["normalized"].verdict is Verdict.correct
    assert grades["strict"].verdict is Verdict.wrong


def test_math_reference_completion_is_the_dataset_solution_and_passes_strict():
    task = MathTask(spec(TaskKind.math))
    (grades,) = task.grade([(MATH, task.reference_completion(MATH))])
    assert grades["strict"].verdict is Verdict.correct


def test_math_without_gold_is_an_error_not_a_wrong_answer():
    with pytest.raises(ValueError, match="no gold"):
        MathTask(spec(TaskKind.math)).grade([(MATH.model_copy(update={"answer": None}), "#### 5")])


@pytest.mark.parametrize(
    ("completion", "program"),
    [
        ("Idea...\n```python\nprint(1)\n```\n", "print(1)\n"),
        # the last python block: models draft, then correct themselves
        ("```python\nprint(1)\n```\nOops:\n```python\nprint(2)\n```", "print(2)\n"),
        ("```py\nx = 1\n```", "x = 1\n"),
        ("```Python3\nx = 1\n```", "x = 1\n"),
        # a python block wins over other blocks, wherever they are
        ("```\nplain\n```\n```python\nprint(3)\n```\n```text\nout\n```", "print(3)\n"),
        # no python block: the first fenced block
        ("```\nprint(4)\n```\n```\nprint(5)\n```", "print(4)\n"),
        ("```cpp\nint main(){}\n```", "int main(){}\n"),
        # an info string after the tag, and fences indented by up to three spaces
        ('```python title="sol.py"\nprint(6)\n```', "print(6)\n"),
        ("   ```python\nprint(7)\n   ```", "print(7)\n"),
        # inline backticks inside the program do not end the block
        ("```python\ns = '``'\nprint(s)\n```", "s = '``'\nprint(s)\n"),
        # no block, an unclosed block (cut off by max_tokens), an empty block: no program
        ("print(1)", None),
        ("```python\nprint(1)\n", None),
        ("```python\n\n```", None),
        ("", None),
    ],
)
def test_extract_program(completion, program):
    assert extract_program(completion) == program


STDIO = Problem(id="c1", question="Read a and b, print a+b. {braces}", tests=[TestCase(input="1 2\n", output="3\n")])


def test_code_prompts_pick_the_format_and_keep_braces():
    task = CodeTask(spec(TaskKind.code))
    assert task.messages(STDIO)[0]["content"] == PROGRAM_PROMPT.replace("{question}", STDIO.question)
    fn = Problem(id="f", question="def f(x):\n    '''Twice x.'''", tests=STDIO.tests, meta={HARNESS_KEY: "h"})
    content = task.messages(fn)[0]["content"]
    assert content == FUNCTION_PROMPT.replace("{question}", fn.question)
    assert content.endswith("```python\ndef f(x):\n    '''Twice x.'''\n```")
    override = CodeTask(spec(TaskKind.code, prompt_template="Solve: {question}"))
    assert override.messages(fn)[0]["content"] == f"Solve: {fn.question}"


def test_code_reference_completion_is_a_fenced_program_that_extracts_back():
    task = CodeTask(spec(TaskKind.code))
    problem = STDIO.model_copy(update={"solution": "a, b = map(int, input().split())\nprint(a + b)\n"})
    assert extract_program(task.reference_completion(problem)) == problem.solution
    assert task.reference_completion(STDIO) is None


def test_completions_without_a_program_need_no_sandbox():
    task = CodeTask(spec(TaskKind.code))
    grades = task.grade([(STDIO, "I cannot solve this."), (STDIO, "```python\nprint(3)")])
    assert [g["tests"].verdict for g in grades] == [Verdict.no_answer, Verdict.no_answer]
    assert (grades[0]["tests"].tests_passed, grades[0]["tests"].tests_total) == (0, 1)
    assert task.backend_used is None


def test_code_problem_without_tests_is_an_error():
    with pytest.raises(ValueError, match="no tests"):
        CodeTask(spec(TaskKind.code)).grade([(STDIO.model_copy(update={"tests": []}), "```python\n1\n```")])


# --- the function harness, run as the sandbox would run it (a program, stdin, stdout) -------------------

CHECK = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n"
TOKEN = "passed 0123456789abcdef"
FUNCTION = Problem(
    id="f1",
    question="def double(x):",
    tests=[TestCase(input=TOKEN + "\n", output=TOKEN + "\n")],
    meta={HARNESS_KEY: function_harness(CHECK, "double")},
)


def run(program: str, stdin: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", program], input=stdin, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout


@pytest.mark.parametrize(
    ("code", "passes", "exit_code"),
    [
        ("def double(x):\n    return 2 * x", True, 0),
        # the model's prints and its own __main__ test block do not disturb the output
        (
            "print('hi')\ndef double(x):\n    print(x)\n    return x + x\nif __name__ == '__main__':\n    input()",
            True,
            0,
        ),
        # a wrong function fails its assertions: a wrong answer, exit 0
        ("def double(x):\n    return x * x", False, 0),
        # a crash is a runtime error (non-zero exit), as for a stdin/stdout program
        ("def double(x):\n    raise RuntimeError", False, 1),
        ("def triple(x):\n    return 3 * x", False, 1),
        ("def double(x) return 2x", False, 1),
        # forging the verdict: printing a pass line and leaving before the check runs, or echoing stdin
        ("import sys\nprint('passed')\nsys.stdout.flush()\nsys.exit(0)", False, 0),
        ("import os\nos.write(1, b'passed\\n')\nos._exit(0)", False, 0),
        ("import os, sys\nos.write(1, sys.stdin.read().encode())\nos._exit(0)", False, 0),
    ],
)
def test_function_harness(code, passes, exit_code):
    status, stdout = run(program_for(FUNCTION, code), FUNCTION.tests[0].input)
    assert status == exit_code
    assert (stdout == FUNCTION.tests[0].output) is passes


def test_stdin_problems_run_the_program_as_it_is():
    assert program_for(STDIO, "print(3)\n") == "print(3)\n"


@pytest.mark.parametrize(("strategy", "every"), [("groundTruth", False), ("softPositive", True)])
def test_code_stages_count_every_test_only_for_soft_positive_pruning(tmp_path, strategy, every):
    from tpt_stages.spec import parse
    from tpt_stages.stage import Context
    from tpt_stages.storage import open_store

    run = parse({"apiVersion": "tpt.dev/v1alpha1", "kind": "SelfImprovementRun", "metadata": {"name": "c"},
                 "spec": {"model": {"uri": "m"}, "task": {"kind": "code", "generator": {}},
                          "select": {"strategy": strategy}}})  # fmt: skip
    assert Context(run, open_store(f"file://{tmp_path}"), 0).task.count_every_test is every


def test_generated_code_problems_get_the_short_prompt_unless_the_spec_has_one():
    from tpt_stages.tasks.code import GENERATED_PROMPT

    problem = Problem(id="p", question="Print 1.", tests=[TestCase(input="", output="1")])
    generated = TaskSpec(kind=TaskKind.code, generator={})
    assert get_task(generated).messages(problem)[0]["content"] == GENERATED_PROMPT.replace("{question}", "Print 1.")
    own = TaskSpec(kind=TaskKind.code, generator={}, prompt_template="Q: {question}")
    assert get_task(own).messages(problem)[0]["content"] == "Q: Print 1."
    assert get_task(spec(TaskKind.code)).messages(problem)[0]["content"].startswith(PROGRAM_PROMPT[:40])
