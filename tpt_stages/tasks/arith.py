"""The built-in generator and the `arith` task: seeded multi-step arithmetic stories, as word problems with
step-by-step solutions or as small programs to write.

It needs no download, so it drives tests, demos and the CPU quick-starts. A story chains 1–3 steps of + − ×
on small operands ("Mia has 4 pears. She buys 3 more. She gives away 2. ..."). Told as a word problem (task
kind `arith`), its reference solution writes one equation per step and ends with `#### N`, the format the prompt
asks for and both graders read. Told as a programming problem (task kind `code`), the starting count comes on
standard input and the program prints the final one; its tests run in the sandbox like any CodeContests
problem's, which makes it the smallest code task a tiny model can learn (tinymodel.py).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from tpt_stages import graders
from tpt_stages.records import Grade, Problem, TestCase
from tpt_stages.spec import ArithGenerator
from tpt_stages.spec import Task as TaskSpec

# Short on purpose: the tiny quick-start model has a small context, and every prompt token costs sampling time.
DEFAULT_PROMPT = "{question}\nSolve step by step. End with '#### <answer>'."

_NAMES = [
    ("Mia", "She"),
    ("Tom", "He"),
    ("Ava", "She"),
    ("Leo", "He"),
    ("Zoe", "She"),
    ("Sam", "He"),
    ("Ivy", "She"),
    ("Max", "He"),
    ("Eva", "She"),
    ("Ben", "He"),
    ("Lia", "She"),
    ("Dan", "He"),
]
_ITEMS = ["apples", "pears", "cards", "coins", "books", "pens", "shells", "stamps", "marbles", "cookies"]
_PHRASES = {
    "+": ["{p} buys {b} more.", "{p} finds {b} more.", "{p} gets {b} more."],
    "-": ["{p} gives away {b}.", "{p} loses {b}.", "{p} sells {b}."],
    "*": ["{p} then has {b} times as many.", "The number of {items} grows {b} times."],
}
# Draws per requested problem before giving up: a tiny configuration (one step, operands <= 2) cannot yield
# thousands of distinct questions, and the caller should hear so instead of waiting forever.
_MAX_DRAWS_PER_PROBLEM = 50


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _run(value: int, steps: list[tuple[str, int, str]]) -> int:
    for op, b, _ in steps:
        value = _apply(op, value, b)
    return value


def _chain(rng: random.Random, cfg: ArithGenerator) -> tuple[str, str, int, list[tuple[str, int, str]]]:
    """One problem from the stream, before it is written out: (name, items, starting value, [(operator,
    operand, sentence), ...]). Counts stay non-negative: subtraction never takes more than there is."""
    name, pronoun = rng.choice(_NAMES)
    items = rng.choice(_ITEMS)
    start = value = rng.randint(min(2, cfg.max_operand), cfg.max_operand)  # "has 1 apples" reads oddly
    steps = []
    for _ in range(rng.randint(cfg.min_steps, cfg.max_steps)):
        ops = [op for op in cfg.operators if op != "-" or value >= 1]
        if not ops:  # only subtraction allowed and nothing left to take away
            break
        op = rng.choice(ops)
        if op == "-":
            b = rng.randint(1, min(cfg.max_operand, value))
        elif op == "*":
            b = rng.randint(min(2, cfg.max_operand), cfg.max_operand)  # "1 times as many" reads oddly
        else:
            b = rng.randint(1, cfg.max_operand)
        steps.append((op, b, rng.choice(_PHRASES[op]).format(p=pronoun, b=b, items=items)))
        value = _apply(op, value, b)
    return name, items, start, steps


def _words(name: str, items: str, start: int, steps: list[tuple[str, int, str]]) -> Problem:
    """The word problem: its answer is the final count, its solution one equation per step."""
    question = " ".join(
        [f"{name} has {start} {items}.", *(s for _, _, s in steps), f"How many {items} does {name} have now?"]
    )
    equations, value = [], start
    for op, b, _ in steps:
        new = _apply(op, value, b)
        equations.append(f"{value} {op} {b} = {new}")
        value = new
    # The id depends only on the question, so it is the same whatever the split sizes are.
    pid = "arith-" + hashlib.sha256(question.encode()).hexdigest()[:12]
    solution = "\n".join([*equations, f"#### {value}"])
    return Problem(id=pid, question=question, answer=str(value), solution=solution, meta={"steps": len(steps)})


def _program(name: str, items: str, start: int, steps: list[tuple[str, int, str]]) -> Problem:
    """The same story as a programming problem (task kind `code`): the starting count comes on standard
    input, the program prints the final one. Tests: the story's own count and three more (seeded by the
    question, so the stream's random state is untouched)."""
    question = " ".join(
        [
            f"{name} has n {items}, where n is given on the input.",
            *(s for _, _, s in steps),
            f"Print how many {items} {name} has now.",
        ]
    )
    digest = hashlib.sha256(question.encode()).hexdigest()
    inputs = [start, *random.Random(digest).sample([n for n in range(21) if n != start], 3)]
    tests = [TestCase(input=f"{n}\n", output=str(_run(n, steps))) for n in inputs]
    lines = ["n = int(input())", *(f"n = n {op} {b}" for op, b, _ in steps), "print(n)"]
    return Problem(
        id="arithprog-" + digest[:12],
        question=question,
        solution="\n".join(lines),
        tests=tests,
        meta={"steps": len(steps)},
    )


def stream(
    cfg: ArithGenerator, count: int, *, exclude: frozenset[str] = frozenset(), programs: bool = False
) -> list[Problem]:
    """The first `count` distinct problems (by question) of the stream seeded by `cfg.seed`, skipping
    questions in `exclude`; told as programs to write when `programs` (the same stories either way)."""
    render = _program if programs else _words
    rng = random.Random(cfg.seed)
    seen: set[str] = set(exclude)
    out: list[Problem] = []
    for _ in range(count * _MAX_DRAWS_PER_PROBLEM):
        if len(out) == count:
            return out
        p = render(*_chain(rng, cfg))
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    if len(out) == count:
        return out
    raise ValueError(
        f"the arith generator found only {len(out)} distinct problems of {count} requested: "
        "allow more steps, larger operands or more operators"
    )


def generate(cfg: ArithGenerator, split: str, *, programs: bool = False) -> list[Problem]:
    """The `train` or `test` split. Both come from one stream, test first, so they never share a question and
    the test set does not change when the train set grows."""
    problems = stream(cfg, cfg.test_problems + (cfg.train_problems if split == "train" else 0), programs=programs)
    if split == "test":
        return problems
    if split == "train":
        return problems[cfg.test_problems :]
    raise ValueError(f"unknown split {split!r} (expected 'train' or 'test')")


class ArithTask:
    """The task plugin (see tasks/base.py). Grading is pure and in-process, so a batch is a simple loop."""

    name = "arith"
    graders: tuple[str, ...] = ("strict", "normalized")

    def __init__(self, task_spec: TaskSpec) -> None:
        self.spec = task_spec
        self.template = task_spec.prompt_template or DEFAULT_PROMPT
        if task_spec.grader is not None:  # the spec's grader is the default, recorded first
            self.graders = (task_spec.grader, *(g for g in self.graders if g != task_spec.grader))

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        # str.replace, not str.format: a user's template may contain other braces.
        return [{"role": "user", "content": self.template.replace("{question}", problem.question)}]

    def reference_completion(self, problem: Problem) -> str | None:
        return problem.solution

    def grade(self, pairs: Sequence[tuple[Problem, str]]) -> list[dict[str, Grade]]:
        fns = {"strict": graders.strict, "normalized": graders.normalized}
        return [{g: fns[g](completion, problem.answer or "") for g in self.graders} for problem, completion in pairs]
