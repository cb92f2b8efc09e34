"""The report reads without the code at hand: the funnel's steps say what the strategy keeps, and the
comparison picture has a title, says what changed, explains its terms and keeps its legend off the curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import yaml

from tpt_stages import report
from tpt_stages.spec import Phase, loads_all
from tpt_stages.status import Funnel, RoundStatus, RunStatus


def run_with(name: str, strategy: str, pass1: list[float], correct: list[int], problems_kept: int):
    doc = {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "m"},
            "task": {"kind": "arith", "generator": {"trainProblems": 4000, "testProblems": 500}},
            "rounds": len(pass1) - 1,
            "select": {"strategy": strategy, "examplesPerRound": 1000},
            "evaluation": {"samples": 4},
        },
    }
    rounds = [
        RoundStatus(
            round=r, k=4, test_problems=500, pass1=p, passk=p + 0.16, correctk=p + 0.16,
            funnel=Funnel(problems=4000, generated=16000, answered=15900, correct=correct[r], unique=problems_kept,
                          selected=1000) if r < len(correct) else None,
        )
        for r, p in enumerate(pass1)
    ]  # fmt: skip
    return loads_all(yaml.safe_dump(doc))[0], RunStatus(phase=Phase.succeeded, rounds=rounds)


PRUNED = run_with("pruned", "groundTruth", [0.17, 0.194, 0.242], [2680, 3380], 1400)
UNPRUNED = run_with("unpruned", "none", [0.17, 0.162, 0.162], [2680, 2610], 4000)


def test_the_funnel_names_what_the_strategy_keeps():
    md = report.markdown([PRUNED, UNPRUNED])
    assert "unique" not in md  # "correct 2,726 → unique 4,000" read as more unique than correct samples
    assert "`groundTruth` keeps the samples verified correct" in md
    assert "`none` keeps every sample the grader could judge (no pruning)" in md
    assert "| round | problems | samples | answered | correct | problems with a kept sample | selected |" in md
    assert "| 0 | 4,000 | 16,000 | 15,900 | 2,680 | 4,000 | 1,000 |" in md
    assert "pruned: Pass@1 17.0 → 24.2 (+7.2 points from round 0 to 2)." in md
    assert "unpruned: Pass@1 17.0 → 16.2 (-0.8 points from round 0 to 2)." in md


@pytest.fixture
def comparison():
    fig = report.figure([PRUNED, UNPRUNED])
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_the_comparison_has_a_title_and_says_what_changed(comparison):
    texts = [t.get_text() for t in comparison.texts if t.get_text() != comparison.get_suptitle()]
    assert comparison.get_suptitle() == "Think, Prune, Train: Pass@1 round over round, groundTruth vs none"
    assert "pruned: Pass@1 17.0 → 24.2 (+7.2 points from round 0 to 2)" in texts[0]
    assert "unpruned: Pass@1 17.0 → 16.2 (-0.8 points from round 0 to 2)" in texts[0]
    assert "round 0 is the starting model" in texts[1] and "Table 5" in texts[1]


def test_the_legend_explains_the_runs_and_stays_off_the_curves(comparison):
    (legend,) = comparison.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [
        "pruned (groundTruth): trained on the samples verified correct",
        "unpruned (none): trained on every sample the grader could judge (no pruning)",
        "Pass@1 (solid)",
        "Pass@4 (dashed)",
    ]
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in comparison.axes)
    assert all(not ax.get_legend() for ax in comparison.axes)
    assert "M_r" not in comparison.axes[0].get_xlabel()
    assert comparison.axes[0].get_xlabel() == "round r (the model after r rounds of training)"
