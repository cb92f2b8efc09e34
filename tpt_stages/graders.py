"""Math graders: a completion and a gold answer in, a `Grade` out. Pure functions, no state.

Two graders, always recorded side by side so that a run shows how much of a score is formatting:

- `strict` is the paper's check ("answers exactly match the ground truth, including formatting"), as its
  authors' evaluation code (soheilzi/TPT `evmath.py`) does it: the FIRST match of `####\\s*(-?[\\d.,]+)`,
  stripped, compared to the gold string as the dataset writes it. `\\s*` takes no space, several spaces, a tab
  or a newline after the marker; a marker followed by anything else (`$`, `**`, a word) is skipped by the
  search, not read as an empty answer. So `####42` is read, `#### $1,600` has no answer, `#### 1,600` is wrong
  against `1600`, and `#### 12.` is wrong against `12`.
- `normalized` reads the answer after the LAST `####` (the model's final word), drops `$`, thousands commas
  and a sentence-ending `.`, and compares numbers exactly (fractions, so `12.0` == `12` and `0.5` == `1/2`).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from tpt_stages.records import Grade, Verdict

MARKER = "####"

# The paper's pattern, character for character (soheilzi/TPT evmath.py, `ANS_RE_GSM8k`).
_STRICT = re.compile(r"####\s*(-?[\d.,]+)")

# After the last marker: optional spaces or markdown bold, a sign on either side of `$`, then a number with
# optional thousands commas, decimals, a trailing `.` (end of sentence) or a `/denominator`.
_NORMALIZED = re.compile(
    r"[\s*]*(?P<sign>-?)\s*\$?\s*(?P<sign2>-?)(?P<num>\d[\d,]*(?:\.\d*)?(?:/\d+)?|\.\d+)",
)


def strict(completion: str, gold: str) -> Grade:
    m = _STRICT.search(completion)
    if m is None:
        return Grade(verdict=Verdict.no_answer)
    # The paper strips the capture; its character class holds no whitespace, so this is kept for fidelity.
    answer = m.group(1).strip()
    return Grade(verdict=Verdict.correct if answer == gold else Verdict.wrong, answer=answer)


def normalized(completion: str, gold: str) -> Grade:
    at = completion.rfind(MARKER)
    if at < 0:
        return Grade(verdict=Verdict.no_answer)
    m = _NORMALIZED.match(completion, at + len(MARKER))
    if m is None:
        return Grade(verdict=Verdict.no_answer)
    answer = ("-" if m.group("sign") or m.group("sign2") else "") + _clean(m.group("num"))
    value = _number(answer)
    if value is None:  # e.g. `1/0`
        return Grade(verdict=Verdict.no_answer, detail=f"not a number: {m.group(0).strip()!r}")
    return Grade(verdict=Verdict.correct if value == gold_value(gold) else Verdict.wrong, answer=answer)


@lru_cache(maxsize=65536)  # normalized grades every sample against its problem's gold: parse each once
def gold_value(gold: str) -> Fraction:
    """The gold answer as a number, cleaned like a model's answer; ValueError if it is not one (a data
    error: loaders call this to reject such rows before any sampling happens)."""
    text = gold.strip()
    negative = text.startswith("-")
    value = _number(_clean(text.lstrip("-").lstrip("$").strip()))
    if value is None:
        raise ValueError(f"gold answer {gold!r} is not a number")
    return -value if negative else value


def extract_gold(answer_text: str) -> str:
    """The final answer of a GSM8K `answer` field (worked solution ending in `#### N`): `N`, stripped of
    whitespace and otherwise exactly as written, because `strict` compares strings. GSM8K writes its golds
    without commas or units; a source that does not would need its golds cleaned before `strict` is fair."""
    at = answer_text.rfind(MARKER)
    if at < 0:
        raise ValueError(f"no {MARKER!r} line in the answer text")
    gold = answer_text[at + len(MARKER) :].strip()
    if not gold:
        raise ValueError(f"nothing after the last {MARKER!r}")
    return gold


def _clean(num: str) -> str:
    return num.replace(",", "").rstrip(".")


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
