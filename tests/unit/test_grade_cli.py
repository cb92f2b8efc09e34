import argparse
import io
import json

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
