"""The `math` task: GSM8K-format word problems, chain-of-thought prompt, final answer on a `#### N` line.

Both graders run on every completion and both are recorded; the spec's `grader` only chooses which one is the
verdict (the first in `graders`). Keeping the other lets a run report how much of its score is formatting.
"""

from __future__ import annotations

from collections.abc import Sequence

from tpt_stages import graders
from tpt_stages.records import Grade, Problem
from tpt_stages.spec import Task as TaskSpec

# Our own wording (not the paper's template): step-by-step reasoning, then one final line in exactly the form
# the `strict` grader reads, so that a correct model is not failed for writing `$1,600` or `12 apples`.
DEFAULT_PROMPT = (
    "Solve the following math word problem. Reason step by step and show each calculation. "
    "Finish with a final line of the form `#### <answer>`, where <answer> is only the final number, "
    "written without units, commas or a dollar sign.\n\n"
    "Problem: {question}"
)

_GRADERS = {"strict": graders.strict, "normalized": graders.normalized}


class MathTask:
    """The task plugin (see tasks/base.py). Grading is pure and in-process."""

    name = "math"

    def __init__(self, task_spec: TaskSpec) -> None:
        self.template = task_spec.prompt_template or DEFAULT_PROMPT
        primary = task_spec.primary_grader
        self.graders: tuple[str, ...] = (primary, *(g for g in _GRADERS if g != primary))

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        # str.replace, not str.format: questions and user templates may contain braces.
        return [{"role": "user", "content": self.template.replace("{question}", problem.question)}]

    def reference_completion(self, problem: Problem) -> str | None:
        return problem.solution

    def grade(self, pairs: Sequence[tuple[Problem, str]]) -> list[dict[str, Grade]]:
        out = []
        for problem, completion in pairs:
            if problem.answer is None:
                raise ValueError(f"math problem {problem.id!r} has no gold answer")
            out.append({g: _GRADERS[g](completion, problem.answer) for g in self.graders})
        return out
