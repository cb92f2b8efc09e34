"""The cluster's credential-free verify pod, as three processes: fetch (credentials) -> grade (none) ->
upload (credentials). Grading must leave no inputs behind for model-written programs to read, and only the
upload commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tpt_stages import layout, manifest
from tpt_stages.manifest import StageOutput
from tpt_stages.records import Problem, Sample, prompt_hash
from tpt_stages.spec import loads_all
from tpt_stages.stage import Context, run_stage
from tpt_stages.storage import LocalStore, open_store

DOC = {
    "apiVersion": "tpt.dev/v1alpha1",
    "kind": "SelfImprovementRun",
    "metadata": {"name": "phases"},
    "spec": {
        "model": {"uri": "unused"},
        "task": {"kind": "arith", "generator": {"trainProblems": 8, "testProblems": 4, "seed": 3}},
        "rounds": 1,
        "think": {"samplesPerProblem": 1},
        "evaluation": {"samples": 1},
    },
}


def _stage(phase: str, workdir, env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tpt_stages", "verify", "--round", "0", "--phase", phase, "--workdir", str(workdir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_fetch_grade_upload_commits_remotely_and_scrubs_the_sandbox_workdir(tmp_path):
    doc = {**DOC, "spec": {**DOC["spec"], "storage": {"uri": f"file://{tmp_path}/remote"}}}
    run = loads_all(yaml.safe_dump(doc))[0]
    remote = open_store(run.run_uri())
    ctx = Context(run, remote, 0, shard=0, num_shards=1)
    from tpt_stages.stages import prepare

    run_stage(layout.Stage.prepare, prepare.run, ctx)
    # A think shard by hand: each problem's reference solution, so every sample is correct.
    think = StageOutput(
        remote, layout.stage_dir(0, layout.Stage.think, 0), stage="think", round=0, shard=0, num_shards=1
    )
    for split in ("train", "test"):
        problems = manifest.read_jsonl(remote, layout.problems_file(split), Problem)
        rows = [
            Sample(problem_id=p.id, split=split, sample_index=0, prompt_hash=prompt_hash(ctx.task.messages(p)),
                   completion=ctx.task.reference_completion(p), prompt_tokens=1, completion_tokens=1,
                   finish_reason="stop", model_uri="unused", temperature=0.8, top_p=1.0, max_tokens=8, seed=0)
            for p in problems
        ]  # fmt: skip
        think.write_jsonl(f"{split}.jsonl", rows)
    think.commit({})

    env = {**os.environ, "TPT_SPEC": yaml.safe_dump(doc), "TPT_REPORT_FILE": str(tmp_path / "report.json")}
    work = tmp_path / "work"
    fetch = _stage("fetch", work, env)
    assert fetch.wait(60) == 0, fetch.stdout.read()
    local = LocalStore(work)
    assert local.exists(layout.problems_file("test"))

    grader_env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    grade, upload = _stage("grade", work, grader_env), _stage("upload", work, env)
    assert grade.wait(120) == 0, grade.stdout.read()
    assert upload.wait(60) == 0, upload.stdout.read()

    # Nothing the programs could read or forge stayed in the sandbox's workdir: no problems, no samples.
    assert not [k for k in local.list() if k.startswith("problems/") or "/think/" in k]
    committed = manifest.read(remote, layout.stage_dir(0, layout.Stage.verify, 0))
    assert committed is not None and committed.report["samples"] == 12
    assert committed.report["verdicts"] == {"correct": 12}
    assert json.loads((tmp_path / "report.json").read_text())["samples"] == 12

    # The pod again (a retry after the commit, e.g. its node died before the Job saw success): it grades
    # nothing and rewrites nothing, and reports the committed shard.
    again = tmp_path / "again"
    assert _stage("fetch", again, env).wait(60) == 0
    assert not LocalStore(again).exists(layout.problems_file("test"))  # no inputs: nothing to grade
    grade, upload = _stage("grade", again, grader_env), _stage("upload", again, env)
    assert grade.wait(60) == 0, grade.stdout.read()
    assert upload.wait(60) == 0, upload.stdout.read()
    assert manifest.read(remote, layout.stage_dir(0, layout.Stage.verify, 0)).finished_at == committed.finished_at
    assert json.loads((tmp_path / "report.json").read_text())["cached"] is True
