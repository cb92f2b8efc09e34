"""Evaluation metrics: the unbiased pass@k estimator (Chen et al. 2021) and Correct@k."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct.

    1 - C(n-c, k) / C(n, k), computed as a stable product instead of with huge binomials.
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
