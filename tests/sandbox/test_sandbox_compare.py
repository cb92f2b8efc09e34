"""Output comparison in the manner of DeepMind's CodeContests: whitespace tokens, a tolerance for decimals."""

from __future__ import annotations

import pytest

from tpt_stages.sandbox.compare import outputs_match


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        ("3\n", "3"),
        ("1 2\n3 4\n", "1  2 3\t4"),
        ("  yes \r\n", "yes"),
        ("", ""),
        ("\n\n", ""),
        ("0.3333333", "0.333333"),
        ("3.141592", "3.14159265"),
        ("1e-9", "0"),  # within the absolute tolerance
        ("2.5", "2.50000"),
        ("+7", "007"),
        ("1000000.000001", "1000000"),  # a decimal and an integer: the tolerance applies
    ],
)
def test_match(got, expected):
    assert outputs_match(got, expected)


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        ("3", "4"),
        ("1 2", "1 2 3"),
        ("12", "1 2"),
        ("YES", "yes"),
        ("3.14", "3.14159"),
        ("1000001", "1000000"),  # integers are exact, however close
        ("nan", "nan0"),
        ("nan", "1.0"),
        ("inf", "1e400"),  # only plain decimals get the tolerance
        ("1_000", "1000"),
        ("", "0"),
    ],
)
def test_mismatch(got, expected):
    assert not outputs_match(got, expected)
