"""Pruning and selection (the "Prune" of Think, Prune, Train): pure functions of verified samples.

Per problem keep the samples the strategy accepts, collapse identical completions, choose one with the run's
seed, then sample f problems. The dataset size stays f every round and nothing accumulates across rounds
(the paper's protocol), so any gain comes from the data's quality, not its quantity.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tpt_stages.records import Verdict, Verified
from tpt_stages.spec import PruneStrategy

#: What each strategy keeps, in words (reports name the funnel's steps with it): `accepts` in prose.
KEEPS = {
    PruneStrategy.ground_truth: "the samples verified correct",
    PruneStrategy.soft_positive: "the samples that pass at least one test",
    PruneStrategy.none: "every sample the grader could judge (no pruning)",
}


def accepts(strategy: PruneStrategy, sample: Verified) -> bool:
    if strategy is PruneStrategy.ground_truth:
        return sample.verdict is Verdict.correct
    if strategy is PruneStrategy.soft_positive:
        return any((g.tests_passed or 0) > 0 for g in sample.grades.values())
    # No pruning still excludes what the grader could not judge: an infra error says nothing about the model.
    return sample.verdict is not Verdict.infra_error


@dataclass(frozen=True)
class Selection:
    chosen: list[Verified]
    accepted: int  # samples the strategy accepted
    unique: int  # problems with at least one accepted sample


def _rng(seed: int, *salt: object) -> random.Random:
    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def select(samples: Iterable[Verified], strategy: PruneStrategy, f: int, seed: int, round: int) -> Selection:
    """One unique accepted solution per problem, then a seeded sample of f problems (all if fewer).

    Deterministic in (samples, seed, round) and independent of input order, so a rerun after a crash, or a
    different sharding, selects the same examples.
    """
    by_problem: dict[str, dict[str, Verified]] = defaultdict(dict)
    accepted = 0
    for s in samples:
        if accepts(strategy, s):
            accepted += 1
            # Identical completions are one solution; keep the lowest sample index for determinism.
            key = s.completion.strip()
            prev = by_problem[s.problem_id].get(key)
            if prev is None or s.sample_index < prev.sample_index:
                by_problem[s.problem_id][key] = s
    chosen = []
    for pid in sorted(by_problem):
        candidates = sorted(by_problem[pid].values(), key=lambda s: s.sample_index)
        chosen.append(_rng(seed, round, pid).choice(candidates))
    if len(chosen) > f:
        chosen = sorted(_rng(seed, round, "sample").sample(chosen, f), key=lambda s: s.problem_id)
    return Selection(chosen=chosen, accepted=accepted, unique=len(by_problem))
