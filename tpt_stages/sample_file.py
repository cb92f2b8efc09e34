"""Samples from anywhere (a user's own generations, another framework's, a published set) read from JSONL for
`tpt grade --samples`: one row per sample, the fields found by name, every row checked.

A row names its problem (an id, else the problem's text: samples of one problem are grouped by it), holds one
completion, and the gold answer (math) or the tests (code: `[{input, output}, ...]`). The first row decides
which field plays which part (the first name present, in the order below); every later row must have the same
fields. Malformed rows are errors naming their line: nothing is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tpt_stages.graders import MARKER, extract_gold, gold_value
from tpt_stages.records import Grade, Problem, TestCase

# Candidate names per part, in order of preference: ours first, then the usual names of other formats
# (GSM8K: question/answer; the paper's sample files: qnum/question/solution; HumanEval: task_id/prompt).
ID_FIELDS = ("problem_id", "id", "idt", "qnum", "task_id", "name")
TEXT_FIELDS = ("problem", "question", "prompt", "description")
COMPLETION_FIELDS = ("completion", "solution", "response", "generation")
GOLD_FIELDS = ("gold", "solnum", "answer")
TESTS_FIELDS = ("tests",)
INDEX_FIELDS = ("sample_index",)


class SampleFileError(ValueError):
    """A samples file that cannot be graded; the message names the line and the field."""


@dataclass(frozen=True)
class Fields:
    """Which field of the rows plays which part (None: absent)."""

    problem: str  # the grouping key: an id field, else the text field
    completion: str
    gold: str | None = None
    #: the gold field holds GSM8K-style worked solutions (the first row's has a `####` line): the gold is
    #: what follows the last marker, as the dataset loader reads GSM8K
    gold_after_marker: bool = False
    tests: str | None = None
    sample_index: str | None = None

    def describe(self) -> dict[str, str]:
        parts = {"problem": self.problem, "completion": self.completion, "gold": self.gold, "tests": self.tests}
        if self.gold is not None and self.gold_after_marker:
            parts["gold"] = f"{self.gold} (after its last {MARKER})"
        parts["sample_index"] = self.sample_index or "(order in the file)"
        return {part: name for part, name in parts.items() if name is not None}


@dataclass
class GradedSample:
    """One sample of the file: where it is, its problem and position, and (once graded) every grader's grade.
    Satisfies `metrics.Graded`."""

    line: int
    problem_id: str
    sample_index: int
    completion: str
    grades: dict[str, Grade] = field(default_factory=dict)

    def verdict_row(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "problem_id": self.problem_id,
            "sample_index": self.sample_index,
            "grades": {g: grade.model_dump(mode="json", exclude_none=True) for g, grade in self.grades.items()},
        }


@dataclass(frozen=True)
class SampleFile:
    fields: Fields
    samples: list[GradedSample]
    problems: dict[str, Problem]  # by id, in order of first appearance

    @property
    def samples_per_problem(self) -> tuple[int, int]:
        """(fewest, most) samples of one problem."""
        counts: dict[str, int] = {}
        for s in self.samples:
            counts[s.problem_id] = counts.get(s.problem_id, 0) + 1
        return min(counts.values()), max(counts.values())


def read(lines: Iterable[str], *, code: bool, name: str = "samples") -> SampleFile:
    """The samples of a JSONL text (`lines` without their line ends), for a code task (tests) or a math one
    (gold answers)."""
    fields: Fields | None = None
    samples: list[GradedSample] = []
    problems: dict[str, Problem] = {}
    first_line: dict[str, int] = {}  # problem id -> line that defined it
    first_value: dict[str, Any] = {}  # problem id -> its gold or tests as that line wrote them
    seen: set[tuple[str, int]] = set()
    counts: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{name} line {number}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise SampleFileError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise SampleFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if fields is None:
            fields = _fields(row, code, where)
        pid = _text_or_id(row, fields.problem, where)
        completion = row.get(fields.completion)
        if not isinstance(completion, str):
            raise SampleFileError(
                f"{where}: field {fields.completion!r}: expected text, got {_shown(row, fields.completion)}"
            )
        part = fields.tests if code else fields.gold
        # A problem's later rows usually repeat its first row's gold or tests verbatim: only a different
        # value is parsed again, to tell `1` from `"1"` (the same) from `2` (an error).
        if pid not in problems:
            problems[pid] = _problem(row, fields, pid, where, code)
            first_line[pid], first_value[pid] = number, row.get(part)
        elif row.get(part) != first_value[pid] and _problem(row, fields, pid, where, code) != problems[pid]:
            raise SampleFileError(
                f"{where}: field {part!r} differs from line {first_line[pid]} for the same problem {pid!r}"
            )
        index = counts.get(pid, 0) if fields.sample_index is None else _index(row, fields.sample_index, where)
        if (pid, index) in seen:
            raise SampleFileError(f"{where}: problem {pid!r} has sample_index {index} twice")
        seen.add((pid, index))
        counts[pid] = counts.get(pid, 0) + 1
        samples.append(GradedSample(line=number, problem_id=pid, sample_index=index, completion=completion))
    if fields is None:
        raise SampleFileError(f"{name}: no samples")
    return SampleFile(fields, samples, problems)


def _fields(row: dict[str, Any], code: bool, where: str) -> Fields:
    def first(names: tuple[str, ...]) -> str | None:
        return next((n for n in names if n in row), None)

    problem = first(ID_FIELDS) or first(TEXT_FIELDS)
    completion = first(COMPLETION_FIELDS)
    answer = first(TESTS_FIELDS) if code else first(GOLD_FIELDS)
    missing = [
        f"{part} (one of {', '.join(names)})"
        for part, value, names in [
            ("the problem", problem, ID_FIELDS + TEXT_FIELDS),
            ("the completion", completion, COMPLETION_FIELDS),
            ("the tests" if code else "the gold answer", answer, TESTS_FIELDS if code else GOLD_FIELDS),
        ]
        if value is None
    ]
    if missing:
        raise SampleFileError(f"{where}: no field for {'; '.join(missing)}; the row has {sorted(row)}")
    assert problem is not None and completion is not None
    return Fields(
        problem=problem,
        completion=completion,
        gold=None if code else answer,
        gold_after_marker=not code and MARKER in str(row[answer]),
        tests=answer if code else None,
        sample_index=first(INDEX_FIELDS),
    )


def _shown(row: dict[str, Any], name: str) -> str:
    return "nothing (missing)" if name not in row else json.dumps(row[name])[:60]


def _text_or_id(row: dict[str, Any], name: str, where: str) -> str:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise SampleFileError(
            f"{where}: field {name!r}: expected a non-empty string or integer, got {_shown(row, name)}"
        )
    return str(value)


def _index(row: dict[str, Any], name: str, where: str) -> int:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SampleFileError(f"{where}: field {name!r}: expected an integer >= 0, got {_shown(row, name)}")
    return value


def _problem(row: dict[str, Any], fields: Fields, pid: str, where: str, code: bool) -> Problem:
    return _tests_problem(row, fields, pid, where) if code else _gold_problem(row, fields, pid, where)


def _gold_problem(row: dict[str, Any], fields: Fields, pid: str, where: str) -> Problem:
    assert fields.gold is not None
    value = row.get(fields.gold)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SampleFileError(
            f"{where}: field {fields.gold!r}: expected text or a number, got {_shown(row, fields.gold)}"
        )
    text = str(value)
    try:
        gold = extract_gold(text) if fields.gold_after_marker else text.strip()
        gold_value(gold)
    except ValueError as e:
        raise SampleFileError(f"{where}: field {fields.gold!r}: {e}") from None
    return Problem(id=pid, question="", answer=gold)


def _tests_problem(row: dict[str, Any], fields: Fields, pid: str, where: str) -> Problem:
    assert fields.tests is not None
    tests = row.get(fields.tests)
    if not isinstance(tests, list) or not tests:
        raise SampleFileError(
            f"{where}: field {fields.tests!r}: expected a non-empty list of {{input, output}} objects"
        )
    cases = []
    for i, test in enumerate(tests):
        try:
            cases.append(TestCase.model_validate(test))
        except ValidationError as e:
            first = e.errors()[0]
            loc = "".join(f".{p}" for p in first["loc"])
            raise SampleFileError(f"{where}: field '{fields.tests}[{i}]{loc}': {first['msg']}") from None
    return Problem(id=pid, question="", tests=cases)
