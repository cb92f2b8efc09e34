from math import comb

import pytest

from tpt_stages.metrics import pass_at_k, summarize


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (20, 0, 1, 0.0),
        (20, 0, 20, 0.0),
        (20, 1, 1, 1 / 20),
        (20, 1, 20, 1.0),
        (20, 5, 1, 5 / 20),
        (20, 5, 20, 1.0),
        (20, 20, 1, 1.0),
        (20, 20, 20, 1.0),
        (20, 5, 10, 1 - comb(15, 10) / comb(20, 10)),
        (10, 3, 4, 1 - comb(7, 4) / comb(10, 4)),
    ],
)
def test_pass_at_k_matches_the_binomial_formula(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_summarize_averages_over_problems_and_counts_correct_at_k_on_the_first_k():
    outcomes = {"a": [True, False, False, False], "b": [False, False, False, True], "c": [False] * 4}
    m = summarize(outcomes, k=2)
    assert m["pass1"] == pytest.approx((0.25 + 0.25 + 0) / 3)
    assert m["passk"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert m["correctk"] == pytest.approx(1 / 3)  # only "a" has a correct sample among its first two


def test_summarize_of_nothing_is_zero():
    assert summarize({}, k=4) == {"pass1": 0.0, "passk": 0.0, "correctk": 0.0}
