"""Typed rows that flow between stages (one JSON object per JSONL line)."""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Verdict(str, Enum):
    correct = "correct"
    wrong = "wrong"
    no_answer = "no_answer"
    timeout = "timeout"
    memory_limit = "memory_limit"
    runtime_error = "runtime_error"
    output_limit = "output_limit"
    # The grader or sandbox failed, not the model: retried, never counted as wrong.
    infra_error = "infra_error"


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestCase(Row):
    __test__ = False  # not a pytest class
    input: str
    output: str


class Problem(Row):
    """One problem, normalised across sources. `answer` is the gold final answer (math), `tests` the
    input/output pairs (code); `solution` is a reference solution when the source ships one."""

    id: str
    question: str
    answer: str | None = None
    solution: str | None = None
    tests: list[TestCase] = Field(default_factory=list)
    time_limit_seconds: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Grade(Row):
    verdict: Verdict
    answer: str | None = None
    tests_passed: int | None = None
    tests_total: int | None = None
    detail: str | None = None


class Sample(Row):
    problem_id: str
    split: str
    sample_index: int
    prompt_hash: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    model_uri: str
    temperature: float
    top_p: float
    max_tokens: int
    seed: int


class Verified(Sample):
    verdict: Verdict
    grades: dict[str, Grade]


class Example(Row):
    """One selected training example: the conversation exactly as think rendered it, plus lineage."""

    problem_id: str
    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    prompt_hash: str
    source_round: int
    sample_index: int


def prompt_hash(messages: list[dict[str, str]]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(m["role"].encode())
        h.update(b"\0")
        h.update(m["content"].encode())
        h.update(b"\1")
    return h.hexdigest()[:16]
