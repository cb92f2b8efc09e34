"""Task plugins by kind. Each kind's module is imported only when asked for, so that a stage pulls in only
what its task needs (the code task's sandbox, the arith generator)."""

from __future__ import annotations

from tpt_stages.spec import Task as TaskSpec
from tpt_stages.spec import TaskKind
from tpt_stages.tasks.base import Task


def get_task(task_spec: TaskSpec, *, sandbox_backend: str = "auto", count_every_test: bool = False) -> Task:
    """The plugin for `task_spec.kind`. For code tasks: `sandbox_backend` (`auto` picks the strongest
    isolation available), and `count_every_test` runs every test of a failing program, to count the tests it
    passes (soft-positive pruning), instead of stopping at its first failure."""
    if task_spec.kind is TaskKind.math:
        from tpt_stages.tasks.math import MathTask

        return MathTask(task_spec)
    if task_spec.kind is TaskKind.code:
        from tpt_stages.tasks.code import CodeTask

        return CodeTask(task_spec, backend=sandbox_backend, count_every_test=count_every_test)
    if task_spec.kind is TaskKind.arith:
        from tpt_stages.tasks.arith import ArithTask

        return ArithTask(task_spec)
    raise ValueError(f"unknown task kind {task_spec.kind!r}")
