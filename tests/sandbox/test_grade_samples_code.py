"""`tpt grade --task code --samples`: every program of a samples file runs in the sandbox against its row's tests,
and the report carries the funnel of verdicts."""

import argparse
import json

import pytest

from tpt_stages import grade_cli

ADD_TESTS = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10\n"}]
ECHO_TESTS = [{"input": "hi\n", "output": "hi\n"}]
ROWS = [
    ("add", "a, b = map(int, input().split())\nprint(a + b)", ADD_TESTS),
    ("add", "print(3)", ADD_TESTS),  # wrong on the second test
    ("add", "while True:\n    pass", ADD_TESTS),  # timeout
    ("add", None, ADD_TESTS),  # no program: no_answer
    ("echo", "print(input())", ECHO_TESTS),
    ("echo", "raise SystemExit(3)", ECHO_TESTS),  # runtime_error
    ("echo", "x = bytearray(2_000_000_000)", ECHO_TESTS),  # memory_limit
    ("echo", "print(input())", ECHO_TESTS),
]


@pytest.mark.parametrize("backend", ["runsc", "bwrap"])
def test_code_samples_run_in_the_sandbox_with_the_funnel_of_verdicts(tmp_path, capsys, backend):
    samples, verdicts = tmp_path / "code.jsonl", tmp_path / "verdicts.jsonl"
    rows = [
        {"problem_id": pid, "completion": f"```python\n{code}\n```" if code else "no code", "tests": tests}
        for pid, code, tests in ROWS
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parser = argparse.ArgumentParser(prog="tpt")
    grade_cli.add_parser(parser.add_subparsers())
    argv = ["grade", "--task", "code", "--samples", str(samples), "--json", "--verdicts", str(verdicts)]
    args = parser.parse_args([*argv, "--backend", backend, "--timeout", "1", "--memory-mb", "256"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sandbox"] == backend
    assert out["graders"] == {
        "tests": {
            "pass1": round((1 / 4 + 2 / 4) / 2, 5),
            "passk": 1.0,
            "correctk": 1.0,
            "verdicts": {"correct": 3, "wrong": 1, "no_answer": 1, "timeout": 1, "memory_limit": 1, "runtime_error": 1},
        }
    }
    assert (out["problems"], out["samples"], out["k"], out["disagreements"]) == (2, 8, 4, 0)
    graded = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert graded[1]["grades"]["tests"] == {
        "verdict": "wrong",
        "tests_passed": 1,
        "tests_total": 2,
        "detail": "test 2/2: expected '10\\n', got '3\\n'",
    }
