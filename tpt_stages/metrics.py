"""Evaluation metrics: the unbiased pass@k estimator (Chen et al. 2021), Correct@k, and the per-grader metrics
of a set of graded samples. One implementation for the score stage and `tpt grade --samples`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from tpt_stages.records import Grade, Verdict


class Graded(Protocol):
    """A sample with a grade per grader (`records.Verified`, or a row of `tpt grade --samples`)."""

    problem_id: str
    sample_index: int
    grades: Mapping[str, Grade]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct.

    1 - C(n-c, k) / C(n, k), computed as a stable product instead of with huge binomials (the paper's
    `estimate_pass_at_k` computes it the same way).
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def summarize(correct_by_problem: Mapping[str, Sequence[bool]], k: int) -> dict[str, float]:
    """Mean pass@1, pass@k and Correct@k (share of problems with at least one correct of the first k)."""
    if not correct_by_problem:
        return {"pass1": 0.0, "passk": 0.0, "correctk": 0.0}
    p1, pk, ck = [], [], []
    for outcomes in correct_by_problem.values():
        n, c = len(outcomes), sum(outcomes)
        p1.append(pass_at_k(n, c, 1))
        pk.append(pass_at_k(n, c, min(k, n)))
        ck.append(float(any(outcomes[:k])))
    return {"pass1": float(np.mean(p1)), "passk": float(np.mean(pk)), "correctk": float(np.mean(ck))}


def grader_metrics(rows: Sequence[Graded], graders: Sequence[str], k: int) -> dict[str, dict[str, float]]:
    """Pass@1, Pass@k and Correct@k per grader, each sample's outcomes in `sample_index` order. Samples a
    grader could not judge (`infra_error`) are left out, not counted as wrong."""
    out = {}
    for g in graders:
        outcomes: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        for r in rows:
            verdict = r.grades[g].verdict
            if verdict is not Verdict.infra_error:
                outcomes[r.problem_id].append((r.sample_index, verdict is Verdict.correct))
        ordered = {pid: [ok for _, ok in sorted(v)] for pid, v in outcomes.items()}
        out[g] = {key: round(value, 5) for key, value in summarize(ordered, k).items()}
    return out


def disagreements(rows: Sequence[Graded], graders: Sequence[str]) -> int:
    """Samples on which the graders' verdicts differ."""
    if len(graders) < 2:
        return 0
    return sum(1 for r in rows if len({r.grades[g].verdict for g in graders}) > 1)


def verdict_counts(rows: Sequence[Graded], grader: str) -> dict[str, int]:
    """How many samples got each verdict from `grader` (the funnel of a code evaluation)."""
    counts = Counter(r.grades[grader].verdict.value for r in rows)
    return {v.value: counts[v.value] for v in Verdict if counts[v.value]}
