import random

from tpt_stages.records import Grade, Verdict, Verified
from tpt_stages.selection import select
from tpt_stages.spec import PruneStrategy


def sample(pid: str, i: int, verdict: Verdict, text: str | None = None, passed: int = 0) -> Verified:
    return Verified(
        problem_id=pid,
        split="train",
        sample_index=i,
        prompt_hash="h",
        completion=text or f"{pid}-{i}",
        prompt_tokens=1,
        completion_tokens=1,
        model_uri="m",
        temperature=0.8,
        top_p=1.0,
        max_tokens=8,
        seed=0,
        verdict=verdict,
        grades={"tests": Grade(verdict=verdict, tests_passed=passed, tests_total=3)},
    )


def pool() -> list[Verified]:
    rows = []
    for p in range(50):
        for i in range(4):
            rows.append(sample(f"p{p:02d}", i, Verdict.correct if (p + i) % 3 == 0 else Verdict.wrong, passed=i))
    return rows


def test_ground_truth_keeps_one_correct_solution_per_problem():
    chosen = select(pool(), PruneStrategy.ground_truth, f=1000, seed=0, round=0).chosen
    assert all(s.verdict is Verdict.correct for s in chosen)
    assert len({s.problem_id for s in chosen}) == len(chosen)
    assert len(chosen) == len({s.problem_id for s in pool() if s.verdict is Verdict.correct})


def test_selection_is_deterministic_and_independent_of_order():
    rows = pool()
    a = select(rows, PruneStrategy.ground_truth, f=10, seed=7, round=1).chosen
    random.Random(3).shuffle(rows)
    b = select(rows, PruneStrategy.ground_truth, f=10, seed=7, round=1).chosen
    assert [s.completion for s in a] == [s.completion for s in b]
    assert len(a) == 10
    c = select(rows, PruneStrategy.ground_truth, f=10, seed=8, round=1).chosen
    assert [s.completion for s in a] != [s.completion for s in c]


def test_identical_completions_count_once():
    rows = [sample("p", i, Verdict.correct, text="same answer #### 4") for i in range(5)]
    sel = select(rows, PruneStrategy.ground_truth, f=10, seed=0, round=0)
    assert sel.accepted == 5 and sel.unique == 1 and len(sel.chosen) == 1
    assert sel.chosen[0].sample_index == 0


def test_fewer_than_f_takes_all():
    sel = select(pool(), PruneStrategy.ground_truth, f=10_000, seed=0, round=0)
    assert len(sel.chosen) == sel.unique


def test_soft_positive_accepts_any_passed_test_and_none_accepts_all_but_infra_errors():
    rows = [
        sample("a", 0, Verdict.wrong, passed=1),
        sample("b", 0, Verdict.wrong, passed=0),
        sample("c", 0, Verdict.infra_error),
    ]
    assert [s.problem_id for s in select(rows, PruneStrategy.soft_positive, 10, 0, 0).chosen] == ["a"]
    assert [s.problem_id for s in select(rows, PruneStrategy.none, 10, 0, 0).chosen] == ["a", "b"]
