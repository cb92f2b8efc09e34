"""`tpt sandbox run` and `tpt sandbox check`, through the real `tpt` parser."""

from __future__ import annotations

import json

from tpt_stages.cli import main


def test_run_prints_one_json_verdict(tmp_path, capsys):
    program = tmp_path / "p.py"
    program.write_text("print(int(input()) + 1)\n")
    tests = tmp_path / "tests.json"
    tests.write_text(json.dumps([{"input": "1\n", "output": "2\n"}, {"input": "5\n", "output": "7\n"}]))
    assert main(["sandbox", "run", str(program), "--tests", str(tests), "--backend", "bwrap"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = json.loads(out)
    assert (line["verdict"], line["backend"], line["tests_passed"], line["tests_total"]) == ("wrong", "bwrap", 1, 2)
    assert line["stdout_tail"] == "6\n" and line["seconds"] > 0


def test_run_with_stdin_and_expected_files(tmp_path, capsys):
    (tmp_path / "p.py").write_text("import time\ntime.sleep(5)\n")
    (tmp_path / "in.txt").write_text("")
    (tmp_path / "out.txt").write_text("1\n")
    argv = ["sandbox", "run", str(tmp_path / "p.py"), "--stdin", str(tmp_path / "in.txt")]
    assert main([*argv, "--expected", str(tmp_path / "out.txt"), "--backend", "runsc", "--timeout", "0.5"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["verdict"], line["backend"]) == ("timeout", "runsc")


def test_run_without_expected_output_only_runs_it(tmp_path, capsys):
    (tmp_path / "p.py").write_text("print('hello')\n")
    assert main(["sandbox", "run", str(tmp_path / "p.py"), "--backend", "bwrap"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["verdict"], line["stdout_tail"]) == ("correct", "hello\n")


def test_bad_tests_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "p.py").write_text("print(1)\n")
    (tmp_path / "t.json").write_text('[{"input": "1"}]')
    assert main(["sandbox", "run", str(tmp_path / "p.py"), "--tests", str(tmp_path / "t.json")]) == 2
    assert "output" in capsys.readouterr().err


def test_check_lists_the_backends(capsys):
    assert main(["sandbox", "check"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "runsc: works (auto)",
        "bwrap: works",
        "userns: unavailable (only when asked for: inside a pod's isolation): sandbox backend 'userns' does not "
        "work on this machine (it needs a user other than root who may create user namespaces and the sandbox "
        "image's program root at /opt/tpt-program-root with a slot mounted, as in the verify pod)",
        "unsafe: works (only when asked for: no isolation)",
    ]


def test_a_sandbox_that_runs_nothing_fails_run_and_check(tmp_path, capsys, monkeypatch):
    """The probe (`/bin/true` under each backend) still passes, but no harness starts: `run` reports
    infra_error with exit 1, and `check` calls the backends broken instead of "works"."""
    from tpt_stages.sandbox import session

    monkeypatch.setattr(session, "harness_command", lambda backend, limits: ["/bin/false"])
    (tmp_path / "p.py").write_text("print('hello')\n")
    assert main(["sandbox", "run", str(tmp_path / "p.py"), "--backend", "bwrap"]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "infra_error"
    assert main(["sandbox", "check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["runsc", "bwrap", "userns", "unsafe"]
    assert lines[0].startswith("runsc: broken (auto): a test program got infra_error: no harness could start")
