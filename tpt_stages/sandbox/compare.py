"""Does a program's output match the expected output? Token comparison in the manner of DeepMind's
CodeContests tester: whitespace (spaces, tabs, line breaks) only separates tokens, and two numeric tokens
where at least one is a decimal (`0.333333`, `1e-9`) are equal within an absolute or relative tolerance of
1e-5, because problems with real-valued answers accept any printout that is close enough.

One deliberate difference: two integer tokens must be equal exactly. `1000001` and `1000000` are within 1e-5
of each other relatively, yet for an integer answer they are different answers, and accepting them would put
wrong programs into the training set.

Pure and stdlib-only: the harness imports it inside the sandbox, where nothing else is installed.
"""

from __future__ import annotations

import math
import re

TOLERANCE = 1e-5

_INTEGER = re.compile(r"[+-]?\d+")
# Python's float() also accepts `1_000`, `nan` and `infinity`; a judge should not: only plain decimals.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def tokens_equal(got: str, expected: str) -> bool:
    if got == expected:
        return True
    if _INTEGER.fullmatch(got) and _INTEGER.fullmatch(expected):
        return int(got) == int(expected)  # `+7` and `007` are 7; no tolerance for integers
    if _DECIMAL.fullmatch(got) and _DECIMAL.fullmatch(expected):
        a, b = float(got), float(expected)
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return False


def outputs_match(got: str, expected: str) -> bool:
    """True if `got` has as many tokens as `expected` and each pair is equal (see the module docstring)."""
    got_tokens, expected_tokens = got.split(), expected.split()
    return len(got_tokens) == len(expected_tokens) and all(
        tokens_equal(g, e) for g, e in zip(got_tokens, expected_tokens, strict=True)
    )
