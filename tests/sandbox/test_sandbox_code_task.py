"""The `code` task grades through the sandbox: its programs run under a real backend, which it reports so that
verify can record it, and a missing sandbox is an error, never a silent fallback to running code bare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tpt_stages
from tpt_stages.records import Problem, Sample, TestCase, Verdict
from tpt_stages.sandbox import backends as sandbox_backends
from tpt_stages.sandbox.backends import SandboxUnavailable
from tpt_stages.spec import Dataset, TaskKind
from tpt_stages.spec import Task as TaskSpec
from tpt_stages.stage import InfrastructureError
from tpt_stages.stages import verify
from tpt_stages.tasks import get_task

DS = Dataset(uri="unused.jsonl")
ADD = Problem(
    id="add",
    question="Print a + b.",
    tests=[TestCase(input="1 2\n", output="3\n"), TestCase(input="5 5\n", output="10\n")],
)


def code_task(backend: str):
    return get_task(TaskSpec(kind=TaskKind.code, train=DS, test=DS, test_timeout_seconds=2, memory_mb=256),
                    sandbox_backend=backend)  # fmt: skip


SEEN = "True False ['tpt_stages'] ['__init__.py', 'sandbox']"


def fenced(code: str) -> str:
    return f"Here it is.\n```python\n{code}\n```\n"


@pytest.mark.parametrize("backend", ["runsc", "bwrap"])
def test_grade_runs_programs_in_the_sandbox(backend):
    task = code_task(backend)
    # A program that reports whether it runs as root and what it sees of the host: in the sandbox it is an
    # unprivileged uid, this checkout is absent, and the view holds nothing of it but the sandbox's own source
    # (no fixtures, no runs).
    checkout, view = Path(tpt_stages.__file__).parent.parent, Path(sandbox_backends.VIEW_SOURCE_ROOT)
    spy = (f"import os\nprint(os.getuid() != 0, os.path.exists({str(checkout)!r}), "
           f"*(sorted(os.listdir(d)) for d in ({str(view)!r}, {str(view / 'tpt_stages')!r})))")  # fmt: skip
    pairs = [
        (ADD, fenced("a, b = map(int, input().split())\nprint(a + b)")),
        (ADD, fenced("print(3)")),
        (ADD, "no code at all"),
        (ADD.model_copy(update={"tests": [TestCase(input="", output=SEEN)]}), fenced(spy)),
    ]
    grades = [g["tests"] for g in task.grade(pairs)]
    assert task.backend_used == backend
    assert [(g.verdict, g.tests_passed, g.tests_total) for g in grades] == [
        (Verdict.correct, 2, 2),
        (Verdict.wrong, 1, 2),
        (Verdict.no_answer, 0, 2),
        (Verdict.correct, 1, 1),
    ], grades[3].detail


def test_verify_retries_infra_errors_and_records_the_rest(monkeypatch):
    """A harness that cannot start gives infra_error, which verify retries, and keeps if it persists."""
    from tpt_stages.sandbox import session

    monkeypatch.setattr(session, "harness_command", lambda backend, limits: ["/bin/false"])
    sample = Sample(problem_id="add", split="train", sample_index=0, prompt_hash="h", completion=fenced("print(3)"),
                    prompt_tokens=1, completion_tokens=1, model_uri="m", temperature=1.0, top_p=1.0, max_tokens=9, seed=0)  # fmt: skip
    (row,) = verify.grade(code_task("bwrap"), "tests", {"add": ADD}, [sample])
    assert row.verdict is Verdict.infra_error


def test_a_shard_of_mostly_infra_errors_fails_naming_the_cause(monkeypatch):
    """A sandbox that runs nothing fails verify as an infrastructure failure, not as wrong answers that
    surface later as "no sample survived pruning"; a few infra errors among real verdicts are kept."""
    samples = [
        Sample(problem_id="add", split="train", sample_index=i, prompt_hash="h", completion=fenced(code),
               prompt_tokens=1, completion_tokens=1, model_uri="m", temperature=1.0, top_p=1.0, max_tokens=9, seed=0)
        for i, code in enumerate(["print(3)", "a, b = map(int, input().split())\nprint(a + b)", "print(4)"])
    ]  # fmt: skip
    rows = verify.grade(code_task("bwrap"), "tests", {"add": ADD}, samples)
    assert [r.verdict for r in rows] == [Verdict.wrong, Verdict.correct, Verdict.wrong]
    rows[0] = rows[0].model_copy(update={"verdict": Verdict.infra_error})
    verify.check_infrastructure(rows, "tests")  # one of three: the shard commits

    from tpt_stages.sandbox import session

    monkeypatch.setattr(session, "harness_command", lambda backend, limits: ["/bin/false"])
    rows = verify.grade(code_task("bwrap"), "tests", {"add": ADD}, samples)
    with pytest.raises(InfrastructureError, match=r"3 of 3 samples got infra_error .*the harness died"):
        verify.check_infrastructure(rows, "tests")


def test_no_sandbox_is_an_error_not_a_bare_run(monkeypatch):
    monkeypatch.setattr(sandbox_backends, "_works", lambda backend: backend == "unsafe")
    with pytest.raises(SandboxUnavailable, match="apt-get install runsc bubblewrap"):
        code_task("auto").grade([(ADD, fenced("print(3)"))])


def test_the_shipped_codecontests_fixtures_pass_with_their_reference_solutions():
    """Every reference solution of the mini CodeContests fixtures passes all its tests under `auto` (the
    quick start's code task), and a program that prints nothing passes none."""
    problems = []
    for split in ("train", "test"):
        path = Path(tpt_stages.__file__).parent / "fixtures" / f"codecontests-mini-{split}.jsonl"
        for line in path.read_text().splitlines():
            row = json.loads(line)
            problems.append(Problem(id=row["id"], question=row["description"], tests=row["tests"], solution=row["solution"]))  # fmt: skip
    task = code_task("auto")
    pairs = [(p, task.reference_completion(p)) for p in problems] + [(p, fenced("pass")) for p in problems]
    grades = [g["tests"] for g in task.grade(pairs)]
    assert task.backend_used == "runsc"
    n = len(problems)
    assert [(g.verdict, g.tests_passed) for g in grades[:n]] == [(Verdict.correct, len(p.tests)) for p in problems]
    assert {(g.verdict, g.tests_passed) for g in grades[n:]} == {(Verdict.wrong, 0)}


def test_reference_timed_limits_fail_a_program_far_slower_than_the_reference():
    """With `referenceTimeMultiple`, a problem's limit is that multiple of its reference solution's slowest
    test (at least REFERENCE_FLOOR_SECONDS): a program that sleeps 2 s passes under the usual 4 s limit and
    times out under 2 × a fast reference. A problem whose reference fails keeps the usual limit."""
    from tpt_stages.tasks.code import REFERENCE_FLOOR_SECONDS

    fast = ADD.model_copy(update={"id": "fast", "solution": "a, b = map(int, input().split())\nprint(a + b)"})
    broken = ADD.model_copy(update={"id": "broken", "solution": "print(0)"})
    slow = fenced("import time\ntime.sleep(2)\na, b = map(int, input().split())\nprint(a + b)")
    spec = dict(kind=TaskKind.code, train=DS, test=DS, test_timeout_seconds=4, memory_mb=256)
    usual = get_task(TaskSpec(**spec), sandbox_backend="bwrap")
    timed = get_task(TaskSpec(**spec, reference_time_multiple=2), sandbox_backend="bwrap")

    assert [g["tests"].verdict for g in usual.grade([(fast, slow)])] == [Verdict.correct]
    grades = [g["tests"] for g in timed.grade([(fast, slow), (broken, slow), (fast, fenced("print(3)"))])]
    assert [g.verdict for g in grades] == [Verdict.timeout, Verdict.correct, Verdict.wrong], grades
    assert REFERENCE_FLOOR_SECONDS <= timed.reference_limits["fast"] < 2
    assert timed.reference_limits["broken"] is None


def test_the_verify_stage_exits_1_naming_the_cause_and_commits_nothing(tmp_path, monkeypatch, capsys):
    """`python -m tpt_stages verify` over a committed think shard, with a sandbox that runs nothing."""
    from tpt_stages import layout, manifest
    from tpt_stages.__main__ import main as stage_main
    from tpt_stages.manifest import StageOutput
    from tpt_stages.records import prompt_hash
    from tpt_stages.sandbox import session
    from tpt_stages.spec import dumps, loads_all
    from tpt_stages.stage import Context, run_stage
    from tpt_stages.stages import prepare
    from tpt_stages.storage import open_store

    doc = {"apiVersion": "tpt.dev/v1alpha1", "kind": "SelfImprovementRun", "metadata": {"name": "broken-sandbox"},
           "spec": {"model": {"uri": "unused"}, "rounds": 1, "storage": {"uri": f"file://{tmp_path}"},
                    "task": {"kind": "code", "generator": {"trainProblems": 3, "testProblems": 2, "seed": 3}}}}  # fmt: skip
    run = loads_all(json.dumps(doc))[0]
    store = open_store(run.run_uri())
    ctx = Context(run, store, 0, shard=0, num_shards=1)
    run_stage(layout.Stage.prepare, prepare.run, ctx)
    think = StageOutput(
        store, layout.stage_dir(0, layout.Stage.think, 0), stage="think", round=0, shard=0, num_shards=1
    )
    for split in ("train", "test"):
        problems = manifest.read_jsonl(store, layout.problems_file(split), Problem)
        think.write_jsonl(f"{split}.jsonl", [
            Sample(problem_id=p.id, split=split, sample_index=0, prompt_hash=prompt_hash(ctx.task.messages(p)),
                   completion=fenced("print(input())"), prompt_tokens=1, completion_tokens=1, model_uri="unused",
                   temperature=0.8, top_p=1.0, max_tokens=8, seed=0)
            for p in problems
        ])  # fmt: skip
    think.commit({})
    (tmp_path / "spec.yaml").write_text(dumps(run))
    monkeypatch.setenv("TPT_REPORT_FILE", str(tmp_path / "report.json"))
    monkeypatch.setattr(session, "harness_command", lambda backend, limits: ["/bin/false"])
    capsys.readouterr()

    assert (
        stage_main(["verify", "--round", "0", "--spec", str(tmp_path / "spec.yaml"), "--sandbox-backend", "bwrap"]) == 1
    )
    (last,) = capsys.readouterr().err.splitlines()[-1:]
    assert last.startswith("error: infrastructure failure: 5 of 5 samples got infra_error after 2 retries")
    assert "the harness died" in last, last
    assert manifest.read(store, layout.stage_dir(0, layout.Stage.verify, 0)) is None
