from math import comb
from types import SimpleNamespace

import pytest

from tpt_stages.metrics import disagreements, grader_metrics, pass_at_k, summarize, verdict_counts
from tpt_stages.records import Grade, Verdict


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


def graded(pid: str, index: int, **verdicts: str) -> SimpleNamespace:
    return SimpleNamespace(
        problem_id=pid, sample_index=index, grades={g: Grade(verdict=Verdict(v)) for g, v in verdicts.items()}
    )


def test_grader_metrics_order_by_sample_index_and_leave_infra_errors_out():
    rows = [
        graded("a", 1, strict="correct", normalized="correct"),
        graded("a", 0, strict="wrong", normalized="correct"),
        graded("a", 2, strict="infra_error", normalized="infra_error"),
        graded("b", 0, strict="no_answer", normalized="no_answer"),
    ]
    m = grader_metrics(rows, ("strict", "normalized"), k=1)
    # strict: a has 1 of 2 judged samples correct, its first (index 0) wrong; b none
    assert m["strict"] == {"pass1": 0.25, "passk": 0.25, "correctk": 0.0}
    assert m["normalized"] == {"pass1": 0.5, "passk": 0.5, "correctk": 0.5}
    assert disagreements(rows, ("strict", "normalized")) == 1
    assert disagreements(rows, ("strict",)) == 0
    assert verdict_counts(rows, "strict") == {"correct": 1, "wrong": 1, "no_answer": 1, "infra_error": 1}
