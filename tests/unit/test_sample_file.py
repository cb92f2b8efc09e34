"""Reading samples from anywhere for `tpt grade --samples`: which fields are read, and every malformed row is an
error naming its line (nothing is skipped)."""

import json

import pytest

from tpt_stages.sample_file import SampleFileError, read


def lines(*rows) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in rows]


def test_our_names_group_by_problem_and_number_samples_in_file_order():
    f = read(
        lines(
            {"problem": "p1", "completion": "#### 1", "gold": "1"},
            {"problem": "p2", "completion": "#### 5", "gold": 2},
            "",
            {"problem": "p1", "completion": "#### 2", "gold": "1"},
        ),
        code=False,
    )
    assert f.fields.describe() == {
        "problem": "problem", "completion": "completion", "gold": "gold", "sample_index": "(order in the file)",
    }  # fmt: skip
    assert [(s.line, s.problem_id, s.sample_index) for s in f.samples] == [(1, "p1", 0), (2, "p2", 0), (4, "p1", 1)]
    assert {pid: p.answer for pid, p in f.problems.items()} == {"p1": "1", "p2": "2"}
    assert f.samples_per_problem == (1, 2)


def test_gsm8k_and_paper_style_names_read_the_gold_after_the_answers_last_marker():
    # The paper's sample files: qnum, question, solution; GSM8K's answer field: a worked solution.
    row = {"qnum": 869, "question": "How much change?", "solution": "#### 500", "answer": "4000-3500=500\n#### 500"}
    f = read(lines(row, {**row, "sample_index": 3}), code=False)
    assert f.fields.problem == "qnum" and f.fields.completion == "solution"
    assert f.fields.describe()["gold"] == "answer (after its last ####)"
    assert f.problems["869"].answer == "500"


def test_the_sample_index_field_orders_samples_and_may_not_repeat():
    row = {"id": "a", "response": "x", "solnum": "7", "sample_index": 4}
    f = read(lines(row, {**row, "sample_index": 0}), code=False)
    assert [s.sample_index for s in f.samples] == [4, 0] and f.fields.sample_index == "sample_index"
    with pytest.raises(SampleFileError, match="line 2: problem 'a' has sample_index 4 twice"):
        read(lines(row, row), code=False)


def test_code_rows_carry_tests():
    tests = [{"input": "1 2\n", "output": "3\n"}]
    f = read(lines({"task_id": "add", "completion": "print(3)", "tests": tests}), code=True)
    assert f.fields.tests == "tests" and f.problems["add"].tests[0].output == "3\n"


@pytest.mark.parametrize(
    ("rows", "code", "message"),
    [
        ([], False, "samples: no samples"),
        (["{not json"], False, "samples line 1: not valid JSON"),
        (["[1, 2]"], False, "samples line 1: expected a JSON object, got list"),
        ([{"completion": "x", "gold": "1"}], False, "line 1: no field for the problem (one of problem_id, id"),
        ([{"problem": "p", "gold": "1"}], False, "no field for the completion (one of completion, solution"),
        ([{"problem": "p", "completion": "x"}], False, "no field for the gold answer (one of gold, solnum, answer)"),
        ([{"problem": "p", "completion": "x"}], True, "no field for the tests (one of tests)"),
        ([{"problem": "p", "completion": "x", "gold": "1"}, {"problem": "p", "gold": "1"}], False,
         "samples line 2: field 'completion': expected text, got nothing (missing)"),
        ([{"problem": "p", "completion": 5, "gold": "1"}], False, "line 1: field 'completion': expected text, got 5"),
        ([{"problem": "", "completion": "x", "gold": "1"}], False, "line 1: field 'problem': expected a non-empty"),
        ([{"problem": "p", "completion": "x", "gold": "forty"}], False, "line 1: field 'gold': gold answer 'forty'"),
        ([{"problem": "p", "completion": "x", "gold": None}], False, "line 1: field 'gold': expected text or a num"),
        ([{"problem": "p", "completion": "x", "answer": "w\n#### 4"}, {"problem": "q", "completion": "x", "answer": "4"}],
         False, "line 2: field 'answer': no '####' line"),
        ([{"problem": "p", "completion": "x", "gold": "1"}, {"problem": "p", "completion": "y", "gold": "2"}], False,
         "line 2: field 'gold' differs from line 1 for the same problem 'p'"),
        ([{"problem": "p", "completion": "x", "gold": "1", "sample_index": -1}], False,
         "line 1: field 'sample_index': expected an integer >= 0, got -1"),
        ([{"problem": "p", "completion": "x", "tests": []}], True, "line 1: field 'tests': expected a non-empty list"),
        ([{"problem": "p", "completion": "x", "tests": [{"input": "1", "output": "1"}, {"input": "1"}]}], True,
         "line 1: field 'tests[1].output': Field required"),
        ([{"problem": "p", "completion": "x", "tests": [{"input": "1", "output": "1"}]},
          {"problem": "p", "completion": "y", "tests": [{"input": "1", "output": "2"}]}], True,
         "line 2: field 'tests' differs from line 1 for the same problem 'p'"),
    ],
)  # fmt: skip
def test_malformed_rows_are_errors_naming_the_line(rows, code, message):
    with pytest.raises(SampleFileError) as e:
        read(lines(*rows), code=code)
    assert message in str(e.value)
