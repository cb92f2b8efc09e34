"""The built-in generator: seeded stories told as word problems (`arith`) or as programs to write (`code`)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tpt_stages import graders
from tpt_stages.spec import ArithGenerator
from tpt_stages.tasks import arith

SMALL = ArithGenerator(train_problems=300, test_problems=100, seed=5)


def run_solution(source: str, stdin: str) -> str:
    """Our own generated reference program, run in process: it only reads a number and does arithmetic."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(source, {"input": io.StringIO(stdin).readline})
    return out.getvalue()


@pytest.mark.parametrize("programs", [False, True], ids=["words", "programs"])
def test_splits_are_seeded_disjoint_and_stable_when_the_train_set_grows(programs):
    train, test = arith.generate(SMALL, "train", programs=programs), arith.generate(SMALL, "test", programs=programs)
    assert len(train) == 300 and len(test) == 100
    assert not {p.question for p in train} & {p.question for p in test}
    assert len({p.id for p in train + test}) == 400
    assert arith.generate(SMALL, "test", programs=programs) == test
    bigger = SMALL.model_copy(update={"train_problems": 500})
    assert arith.generate(bigger, "test", programs=programs) == test


def test_the_word_problems_of_the_quick_start_do_not_change():
    # The README's quick-start numbers were measured on this stream: a change to the generator must not
    # silently move them.
    first = arith.generate(ArithGenerator(), "test")[0]
    assert (first.id, first.answer) == ("arith-d60e46129769", "4"), first


def test_word_solutions_are_equations_that_reach_the_answer_and_pass_both_graders():
    for p in arith.generate(SMALL, "test"):
        *equations, last = p.solution.split("\n")
        for eq in equations:
            left, right = eq.split(" = ")
            assert eval(left) == int(right), eq  # "4 + 3": our own generated text
        assert last == f"#### {p.answer}"
        assert graders.strict(p.solution, p.answer).verdict.value == "correct"
        assert graders.normalized(p.solution, p.answer).verdict.value == "correct"


def test_programs_tell_the_same_stories_and_their_solutions_pass_their_tests():
    words = arith.generate(SMALL, "test")
    programs = arith.generate(SMALL, "test", programs=True)
    for p in programs:
        assert p.id.startswith("arithprog-") and p.answer is None
        assert "where n is given on the input" in p.question and p.question.endswith("has now.")
        assert len(p.tests) == 4 and len({t.input for t in p.tests}) == 4
        for t in p.tests:
            assert run_solution(p.solution, t.input).strip() == t.output
    # The same stories: the first draw of the stream (no duplicate skipped yet) told both ways.
    name, start, items, rest = re.match(r"(\w+) has (\d+) (\w+)\. (.*) How many", words[0].question).groups()
    assert (
        programs[0].question
        == f"{name} has n {items}, where n is given on the input. {rest} Print how many {items} {name} has now."
    )
    assert (programs[0].tests[0].input, programs[0].tests[0].output) == (f"{start}\n", words[0].answer)


def test_a_configuration_too_small_for_the_request_says_so():
    tiny = ArithGenerator(train_problems=5000, test_problems=10, min_steps=1, max_steps=1, max_operand=2, operators="+")
    with pytest.raises(ValueError, match="distinct problems"):
        arith.generate(tiny, "train")
