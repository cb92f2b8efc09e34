"""The task plugin interface: how problems become prompts and how completions get verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tpt_stages.records import Grade, Problem


class Task(Protocol):
    name: str
    #: every grader this task records, the first being its default
    graders: tuple[str, ...]

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        """The chat messages sent to the model (the model's chat template renders them)."""

    def reference_completion(self, problem: Problem) -> str | None:
        """A correct completion in the format the prompt asks for, when the problem ships one."""

    def grade(self, pairs: Sequence[tuple[Problem, str]]) -> list[dict[str, Grade]]:
        """A grade per grader for every (problem, completion) pair, in order. Batched so that code tasks
        pay sandbox start-up once per batch."""
