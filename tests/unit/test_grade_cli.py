import argparse
import io
import json
import time
from pathlib import Path

import pytest

from tpt_stages import grade_cli


def tpt_grade(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tpt")
    grade_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["grade", *argv])
    return args.func(args)


def test_math_prints_every_grader_on_one_line(tmp_path, capsys):
    completion = tmp_path / "c.txt"
    completion.write_text("20 * 80 = 1,600\n#### 1,600")
    assert tpt_grade("--task", "math", "--gold", "1600", "--completion-file", str(completion)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {
        "strict": {"verdict": "wrong", "answer": "1,600"},
        "normalized": {"verdict": "correct", "answer": "1600"},
    }


def test_completion_from_stdin_and_no_answer(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("I do not know."))
    assert tpt_grade("--task", "math", "--gold", "7", "--completion-file", "-") == 0
    assert json.loads(capsys.readouterr().out)["strict"] == {"verdict": "no_answer", "answer": None}


def test_arith_uses_its_task_plugin(monkeypatch, capsys):
    pytest.importorskip("tpt_stages.tasks.arith")
    monkeypatch.setattr("sys.stdin", io.StringIO("4 + 3 = 7\n#### 7"))
    assert tpt_grade("--task", "arith", "--gold", "7", "--completion-file", "-") == 0
    grades = json.loads(capsys.readouterr().out)
    assert {g["verdict"] for g in grades.values()} == {"correct"}


def test_code_without_a_program_needs_no_sandbox(tmp_path, monkeypatch, capsys):
    tests = tmp_path / "tests.jsonl"
    tests.write_text('{"input": "1 2\\n", "output": "3\\n"}\n\n{"input": "2 2\\n", "output": "4\\n"}\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("no code here"))
    assert tpt_grade("--task", "code", "--tests", str(tests), "--completion-file", "-") == 0
    assert json.loads(capsys.readouterr().out) == {
        "tests": {"verdict": "no_answer", "answer": None, "tests_passed": 0, "tests_total": 2}
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "math"], "--task math needs --gold"),
        (["--task", "code"], "--task code needs --tests"),
        (["--task", "code", "--tests", "{tmp}/bad.jsonl"], "bad.jsonl line 1: not a test case"),
        (["--task", "code", "--tests", "{tmp}/empty.jsonl"], "empty.jsonl: no test cases"),
        (["--task", "math", "--gold", "1", "--completion-file", "{tmp}/missing.txt"], "missing.txt"),
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "bad.jsonl").write_text('{"input": "1"}\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("#### 1"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--completion-file" not in argv:
        argv += ["--completion-file", "-"]
    assert tpt_grade(*argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


# --- tpt grade --samples ------------------------------------------------------------------------------------

# Three problems, four samples each, with the paper's verdicts (strict) and normalized's worked out by hand.
SAMPLES = [
    ("a", "12", ["####12", "#### 12", "#### $12", "#### 13"]),  # strict C C N W, normalized C C C W
    ("b", "1,000", ["#### 1000", "#### 1,000", "no answer", "#### 999"]),  # strict W C N W, normalized C C N W
    ("c", "5", ["x", "y", "z", "#### 6"]),  # nothing correct
]


def write_samples(path, names=("problem", "completion", "gold")):
    p, c, g = names
    rows = [{p: pid, c: text, g: gold} for pid, gold, texts in SAMPLES for text in texts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_samples_json_has_every_graders_metrics_and_the_disagreements(tmp_path, capsys):
    samples = write_samples(tmp_path / "s.jsonl")
    assert tpt_grade("--task", "math", "--samples", str(samples), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["graders"] == {
        "strict": {"pass1": 0.25, "passk": round(2 / 3, 5), "correctk": round(2 / 3, 5),
                   "verdicts": {"correct": 3, "wrong": 4, "no_answer": 5}},
        "normalized": {"pass1": round((0.75 + 0.5) / 3, 5), "passk": round(2 / 3, 5), "correctk": round(2 / 3, 5),
                       "verdicts": {"correct": 5, "wrong": 3, "no_answer": 4}},
    }  # fmt: skip
    assert (out["problems"], out["samples"], out["samples_per_problem"], out["k"]) == (3, 12, 4, 4)
    assert out["disagreements"] == 2  # `#### $12` and `#### 1000`
    assert out["fields"] == {"problem": "problem", "completion": "completion", "gold": "gold",
                             "sample_index": "(order in the file)"}  # fmt: skip


def test_samples_k_option_and_question_solution_answer_names(tmp_path, capsys):
    samples = write_samples(tmp_path / "s.jsonl", names=("question", "solution", "answer"))
    assert tpt_grade("--task", "math", "--samples", str(samples), "--json", "--k", "2") == 0
    out = json.loads(capsys.readouterr().out)
    strict = out["graders"]["strict"]
    # a: 2 of 4 correct -> pass@2 = 1 - C(2,2)/C(4,2); b: 1 of 4 -> 1 - C(3,2)/C(4,2); Correct@2: a and b
    assert strict["passk"] == round((1 - 1 / 6 + 1 - 3 / 6) / 3, 5) and strict["correctk"] == round(2 / 3, 5)
    assert out["fields"]["completion"] == "solution" and out["k"] == 2


def test_samples_table_and_verdicts_file(tmp_path, capsys):
    samples, verdicts = write_samples(tmp_path / "s.jsonl"), tmp_path / "v.jsonl"
    assert tpt_grade("--task", "math", "--samples", str(samples), "--verdicts", str(verdicts)) == 0
    out = capsys.readouterr().out
    assert "12 samples of 3 problems (4 per problem), k = 4" in out
    assert "│ strict     │     25.0 │     66.7 │        66.7 │       3 │     4 │         5 │" in out
    assert "graders disagree on 2 of 12 samples" in out
    rows = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert len(rows) == 12
    assert rows[2] == {
        "line": 3, "problem_id": "a", "sample_index": 2,
        "grades": {"strict": {"verdict": "no_answer"}, "normalized": {"verdict": "correct", "answer": "12"}},
    }  # fmt: skip


def test_samples_5000_with_both_graders_in_under_10_seconds(tmp_path, capsys):
    # GSM8K-shaped completions (a worked solution, then the marker), 250 problems x 20 samples.
    path = tmp_path / "s.jsonl"
    with path.open("w") as f:
        for i in range(5000):
            steps = " ".join(f"{j} + {i} = {j + i}." for j in range(30))
            f.write(json.dumps({"problem": f"p{i // 20}", "completion": f"{steps}\n#### {i % 7}", "gold": "3"}) + "\n")
    started = time.perf_counter()
    assert tpt_grade("--task", "math", "--samples", str(path), "--json") == 0
    seconds = time.perf_counter() - started
    assert json.loads(capsys.readouterr().out)["samples"] == 5000
    assert seconds < 10, f"{seconds:.1f} s"


def test_samples_errors_name_the_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "completion": "#### 1", "gold": "1"}\n{"problem": "p", "gold": "1"}\n')
    assert tpt_grade("--task", "math", "--samples", str(bad)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{bad} line 2: field 'completion': expected text, got nothing (missing)" in captured.err
    assert tpt_grade("--task", "math", "--samples", str(bad), "--gold", "1") == 2
    assert "--samples takes the gold answers or tests from its rows" in capsys.readouterr().err
    assert tpt_grade("--task", "math", "--samples", str(tmp_path / "missing.jsonl")) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    good = write_samples(tmp_path / "s.jsonl")
    assert tpt_grade("--task", "math", "--samples", str(good), "--verdicts", str(tmp_path / "no" / "v.jsonl")) == 2
    assert f"--verdicts {tmp_path / 'no' / 'v.jsonl'}: no such directory" in capsys.readouterr().err


def test_the_readme_example_prints_what_the_readme_shows(capsys, monkeypatch):
    root = Path(__file__).resolve().parents[2]
    command = "$ tpt grade --task math --samples examples/samples-math.jsonl\n"
    readme = (root / "README.md").read_text()
    shown = readme[readme.index(command) + len(command) :].split("```", 1)[0]
    monkeypatch.chdir(root)
    monkeypatch.delenv("FORCE_COLOR", raising=False)  # the README shows plain text
    assert tpt_grade("--task", "math", "--samples", "examples/samples-math.jsonl") == 0
    assert capsys.readouterr().out == shown
