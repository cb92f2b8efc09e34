"""The problems of a source that the paper evaluates on (`Dataset.subset`).

- `paperGsm8kTest500`: "a subset of 500 questions from the test set" (§3.3). The authors published it
  (soheilzi/TPT `data/test500.json`); each row's `idt` is its 0-based index in the GSM8K test split. We ship
  the 500 indices with a short hash of each question, not the questions: the hub dataset is the source, and the
  hashes prove that the rows picked are the paper's (a reordered or edited copy fails the load, naming rows).
- `withoutImages`: "the 140 questions without image tags from CodeContests" (§3.3): statements with an
  `<image>` tag (a figure the text-only model never sees) are left out.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from collections.abc import Iterable, Iterator
from typing import Any

from tpt_stages.datasets import DatasetError, normalize_question
from tpt_stages.records import Problem

PAPER_GSM8K_TEST500 = "paper-gsm8k-test500.tsv"
IMAGE_TAG = "<image>"
_SHOWN = 3  # mismatching rows named in an error


def question_hash(question: str) -> str:
    """12 hex digits of the SHA-256 of the question as `normalize_question` writes it: whitespace and Unicode
    forms do not count (a copy may re-space the text), words and numbers do."""
    return hashlib.sha256(normalize_question(question).encode()).hexdigest()[:12]


def paper_gsm8k_test500() -> dict[int, str]:
    """The shipped index: row index in the GSM8K test split -> hash of its question."""
    text = (importlib.resources.files("tpt_stages") / "data" / PAPER_GSM8K_TEST500).read_text()
    table = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            index, digest = line.split("\t")
            table[int(index)] = digest
    return table


def pick_by_index(rows: Iterable[tuple[str, Any]], table: dict[int, str], label: str) -> Iterator[tuple[str, Any]]:
    """The rows (`(where, raw row)` in source order) at the indices of `table`, each checked against its
    question's hash. After the last row: `DatasetError` if any picked row is not the one indexed (naming the
    first few) or the source ended before the last index."""
    mismatched: list[str] = []
    count = 0
    for index, (where, raw) in enumerate(rows):
        count += 1
        expected = table.get(index)
        if expected is None:
            continue
        question = _question(raw)
        if question is None or question_hash(question) != expected:
            mismatched.append(f"{where} (index {index})")
            continue
        yield where, raw
    if mismatched:
        raise DatasetError(
            f"subset {label}: {len(mismatched)} of the {len(table)} indexed rows do not hold the question the subset "
            f"indexed ({', '.join(mismatched[:_SHOWN])}{', ...' if len(mismatched) > _SHOWN else ''}): this source's "
            "order or text differs from the split the subset was made from"
        )
    if count <= max(table):
        raise DatasetError(
            f"subset {label}: the source has {count} rows, but the subset indexes rows up to {max(table)}"
        )


def without_images(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if IMAGE_TAG not in p.question.lower()]


def _question(raw: Any) -> str | None:
    try:
        row = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return None
    question = row.get("question") if isinstance(row, dict) else None
    return question if isinstance(question, str) else None
