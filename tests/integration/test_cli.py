"""`tpt` as a newcomer meets it: errors in one line, output that reads well in a log, reports where they belong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tpt_stages import layout
from tpt_stages.cli import main, stage_line
from tpt_stages.layout import Stage
from tpt_stages.planner import Observation, StageRef, State
from tpt_stages.spec import Phase, dumps, load_all, loads_all
from tpt_stages.status import Funnel, RoundStatus, RunStatus
from tpt_stages.storage import open_store


def run_doc(name: str, storage: str, **spec) -> dict:
    return {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "./no-such-model"},
            "task": {"kind": "arith", "generator": {"trainProblems": 40, "testProblems": 10, "seed": 1}},
            "rounds": 1,
            "storage": {"uri": storage},
            **spec,
        },
    }


def test_a_missing_run_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: cannot read {tmp_path / 'missing.yaml'}: No such file or directory"]
    assert captured.out == ""


def test_output_that_is_not_a_terminal_has_a_line_per_stage_and_whole_uris(tmp_path, capsys):
    """Piped (as under pytest): no live view, one line per finished stage as it finishes, the table once,
    and URIs longer than the 80 columns rich assumes stay on one line."""
    store = tmp_path / ("a-directory-name-long-enough-that-any-uri-under-it-passes-eighty-columns-" * 2)
    run_file = tmp_path / "run.yaml"
    doc = run_doc("piped", f"file://{store}", think={"engine": "transformers"})
    run_file.write_text(yaml.safe_dump(doc))
    assert main(["run", str(run_file)]) == 1  # prepare works; think fails at once: there is no model
    lines = capsys.readouterr().err.splitlines()
    uri = f"file://{store}/piped"
    assert lines[0] == f"piped: artifacts in {uri}"
    assert lines[1].startswith("round 0 prepare: ") and lines[1].endswith(" s, 40 train and 10 test problems")
    assert lines[2].startswith("round 0 think: failed after ") and "InvalidInput: shard 0 exited 2" in lines[2]
    assert "error: model.uri './no-such-model': no model there" in lines[2]
    assert f"(log: {store}/piped/logs/r00-think-a0-shard0.log)" in lines[2]  # whole, on the same line
    assert lines[3].startswith("piped — Failed") and lines[4].startswith("┏")
    assert lines[-2].startswith("run piped failed: round 0 think failed: InvalidInput")
    assert lines[-1] == f"report: {uri}/{layout.REPORT_MD}"


def test_a_comparison_goes_beside_the_runs_not_into_the_first(tmp_path, capsys):
    uris = []
    for name, strategy, pass1 in (("pruned", "groundTruth", 0.25), ("unpruned", "none", 0.15)):
        run = loads_all(yaml.safe_dump(run_doc(name, f"file://{tmp_path}", select={"strategy": strategy})))[0]
        store = open_store(run.run_uri())
        store.write_text(layout.SPEC, dumps(run))
        rounds = [
            RoundStatus(round=0, k=4, pass1=0.15, passk=0.3, correctk=0.3, funnel=Funnel(generated=400, selected=100)),
            RoundStatus(round=1, k=4, pass1=pass1, passk=0.35, correctk=0.35),
        ]
        status = RunStatus(phase=Phase.succeeded, rounds=rounds)
        store.write_text(layout.STATUS, status.model_dump_json())
        store.write_text(layout.REPORT_MD, f"{name}'s own report")
        uris.append(run.run_uri())
    assert main(["report", *uris]) == 0
    captured = capsys.readouterr()
    md, png = tmp_path / "pruned-vs-unpruned-report.md", tmp_path / "pruned-vs-unpruned-report.png"
    assert captured.err.splitlines() == [f"wrote file://{md} and file://{png}"]
    assert md.read_text() == captured.out.removesuffix("\n") and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "pruned" / layout.REPORT_MD).read_text() == "pruned's own report"
    assert not (tmp_path / "pruned" / layout.REPORT_PNG).exists()
    assert main(["report", uris[0]]) == 0  # one run: its own report, rendered again
    assert (tmp_path / "pruned" / layout.REPORT_MD).read_text().startswith("# Think, Prune, Train report")


def test_a_line_per_finished_stage_says_what_it_counted():
    reports = {
        Stage.prepare: {
            "train_problems": 7473,
            "test_problems": 500,
            "subsets": {"test": {"subset": "paperGsm8kTest500", "kept": 500, "of": 1319}},
        },
        Stage.think: {"samples": 16000, "tokens": 1234567, "model_uri": "m"},
        Stage.verify: {"samples": 16000, "verdicts": {"correct": 2726, "wrong": 13274}},
        Stage.score: {"primary": "normalized", "k": 4, "graders": {"normalized": {"pass1": 0.17, "passk": 0.33}}},
        Stage.select: {"selected": 1000, "accepted": 2726, "unique": 1400},
        Stage.train: {"model_uri": "m", "examples": 1000, "train_loss": 0.6412},
    }
    lines = [
        stage_line(StageRef(2, stage, 0), Observation(State.succeeded, report=r, seconds=61.4))
        for stage, r in reports.items()
    ]
    assert lines == [
        "round 2 prepare: 61 s, 7,473 train and 500 test problems (test: paperGsm8kTest500 kept 500 of 1,319)",
        "round 2 think: 61 s, 16,000 samples, 1,234,567 tokens",
        "round 2 verify: 61 s, correct 2,726, wrong 13,274",
        "round 2 score: 61 s, Pass@1 17.0%, Pass@4 33.0%",
        "round 2 select: 61 s, 1,000 examples selected",
        "round 2 train: 61 s, 1,000 examples, loss 0.641",
    ]
    again = Observation(State.succeeded, report={"cached": True, "samples": 5}, seconds=0.2)
    assert stage_line(StageRef(0, Stage.verify, 1), again) == "round 0 verify (attempt 2): 0 s (committed before), done"


def test_help_examples_name_runs_the_quick_start_makes(capsys):
    quickstart = Path(__file__).parents[2] / "examples" / "quickstart.yaml"
    names = {run.name for run in load_all(quickstart)}
    for command in ("status", "delete"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        (example,) = re.findall(r"file://\./tpt-runs/([\w-]+)", capsys.readouterr().out)
        assert example in names
