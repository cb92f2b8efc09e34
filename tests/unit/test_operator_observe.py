"""observe(): Job + Pods -> Observation, and decide(): one reconcile, both pure."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tpt_operator.observe import observe
from tpt_operator.reconcile import action_event, decide
from tpt_stages.planner import State

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def job(name="run-r00-think-a0", shards=2, conditions=(), gpus=1, **status) -> dict:
    return {
        "metadata": {"name": name, "uid": "u1", "annotations": {"tpt.dev/shards": str(shards)},
                     "creationTimestamp": iso(T0)},
        "spec": {"parallelism": shards, "template": {"spec": {"containers": [
            {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}},
        "status": {"startTime": iso(T0), "conditions": list(conditions), **status},
    }  # fmt: skip


def pod(index=0, phase="Succeeded", report=None, job_name="run-r00-think-a0", **state) -> dict:
    term = {"exitCode": 0, "message": json.dumps(report)} if report is not None else None
    st = state or ({"terminated": term} if term else {"running": {}})
    return {
        "metadata": {"name": f"{job_name}-{index}", "labels": {"batch.kubernetes.io/job-name": job_name},
                     "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
        "status": {"phase": phase, "containerStatuses": [{"name": "stage", "state": st}]},
    }  # fmt: skip


COMPLETE = {"type": "Complete", "status": "True", "lastTransitionTime": iso(T0 + timedelta(seconds=90))}


def test_absent_and_running():
    assert observe(None, []).state is State.absent
    assert observe(job(), [pod(phase="Running")], T0).state is State.running


def test_succeeded_merges_the_shards_reports_with_seconds_and_gpus():
    pods = [pod(0, report={"samples": 10, "tokens": 100}), pod(1, report={"samples": 5, "tokens": 50}),
            pod(0, job_name="other-job", report={"samples": 999})]  # fmt: skip
    obs = observe(job(conditions=[COMPLETE], completionTime=iso(T0 + timedelta(seconds=90))), pods, T0)
    assert obs.state is State.succeeded and obs.report["samples"] == 15 and obs.report["tokens"] == 150
    assert obs.seconds == 90 and obs.gpus == 2


def test_a_missing_report_waits_a_little_then_fails():
    j = job(conditions=[COMPLETE], completionTime=iso(T0))
    pods = [pod(0, report={"samples": 1})]
    assert observe(j, pods, T0 + timedelta(seconds=5)).state is State.running
    late = observe(j, pods, T0 + timedelta(seconds=600))
    assert late.state is State.failed and late.reason == "ReportMissing" and "[1]" in late.message


@pytest.mark.parametrize(
    ("pods", "condition", "reason", "words"),
    [
        ([pod(phase="Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})], "BackoffLimitExceeded",
         "OOMKilled", "out of memory"),
        ([pod(phase="Failed", terminated={"exitCode": 1, "message": "Traceback\nKeyError: 'x'"})],
         "BackoffLimitExceeded", "StageFailed", "KeyError"),
        ([pod(phase="Failed", terminated={"exitCode": 2, "message": "error: bad data"})], "PodFailurePolicy",
         "InvalidInput", "bad data"),
        ([pod(phase="Running")], "DeadlineExceeded", "DeadlineExceeded", "deadline"),
    ],
)  # fmt: skip
def test_failures_carry_the_pod_level_reason(pods, condition, reason, words):
    failed = {"type": "Failed", "status": "True", "reason": condition, "message": "Job was active longer than deadline"}
    obs = observe(job(conditions=[failed]), pods, T0)
    assert obs.state is State.failed and obs.reason == reason and words in obs.message


def test_a_failed_job_waits_a_little_for_its_pods_failure_reason():
    """Jobs and Pods come on separate watches: the Job's Failed condition can come before the pod's exit
    status, which tells a user error (exit 2, InvalidInput) from a crash."""
    at = iso(T0 + timedelta(seconds=90))
    failed = {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "lastTransitionTime": at}
    lagging = [pod(phase="Running")]
    assert observe(job(conditions=[failed]), lagging, T0 + timedelta(seconds=95)).reason == "WaitingForPods"
    arrived = [pod(phase="Failed", terminated={"exitCode": 2, "message": "error: bad data"})]
    assert observe(job(conditions=[failed]), arrived, T0 + timedelta(seconds=95)).reason == "InvalidInput"
    late = observe(job(conditions=[failed]), lagging, T0 + timedelta(seconds=600))
    assert late.state is State.failed and late.reason == "PodFailurePolicy"


@pytest.mark.parametrize(
    ("p", "reason"),
    [
        (pod(phase="Pending", waiting={"reason": "ImagePullBackOff", "message": "pull access denied"}),
         "ImagePullBackOff"),
        ({"metadata": {"name": "p", "labels": {"job-name": "run-r00-think-a0"}},
          "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                        "reason": "Unschedulable",
                                                        "message": "0/3 nodes: insufficient nvidia.com/gpu"}]}},
         "Unschedulable"),
    ],
)  # fmt: skip
def test_a_stuck_stage_is_running_with_the_reason(p, reason):
    obs = observe(job(), [p], T0)
    assert obs.state is State.running and obs.reason == reason


def run_body(status=None, **spec) -> dict:
    return {
        "apiVersion": "tpt.dev/v1alpha1", "kind": "SelfImprovementRun",
        "metadata": {"name": "run", "namespace": "ns", "uid": "u", "generation": 3, "resourceVersion": "7"},
        "spec": {"model": {"uri": "m"}, "task": {"kind": "arith"}, "rounds": 1, **spec},
        "status": status or {},
    }  # fmt: skip


def test_the_first_reconcile_launches_prepare_and_writes_status_once():
    out = decide(run_body(), [], [], T0)
    assert [a.ref.slug for a in out.actions] == ["r00-prepare-a0"]
    assert out.changed and out.status.phase.value == "Running" and out.status.observed_generation == 3
    running = decide(run_body(out.status.to_document()), [job("run-r00-prepare-a0", 1)], [], T0)
    assert running.changed and running.status.reason == "StageRunning" and running.actions == ()
    later = T0 + timedelta(seconds=9)
    again = decide(run_body(running.status.to_document()), [job("run-r00-prepare-a0", 1)], [], later)
    assert not again.changed and again.actions == ()  # nothing new: no write


def test_a_succeeded_stage_moves_on_with_events():
    st = decide(run_body(), [], [], T0).status.to_document()
    done = job("run-r00-prepare-a0", 1, conditions=[COMPLETE], gpus=0, completionTime=iso(T0 + timedelta(seconds=3)))
    out = decide(run_body(st), [done], [pod(0, report={"problems": 3}, job_name="run-r00-prepare-a0")], T0)
    assert [a.ref.slug for a in out.actions] == ["r00-think-a0"]
    assert [e.reason for e in out.events] == ["StageSucceeded"]  # StageStarted: when the Job is created
    assert action_event(out.actions[0]).reason == "StageStarted"
    assert out.finished_stage == ("prepare", 3.0)


def test_suspend_cancels_the_running_job():
    st = decide(run_body(), [], [], T0).status.to_document()
    out = decide(run_body(st, suspend=True), [job("run-r00-prepare-a0", 1)], [], T0)
    assert [type(a).__name__ for a in out.actions] == ["Cancel"] and out.status.phase.value == "Suspended"
    assert "RunSuspended" in [e.reason for e in out.events]
    assert action_event(out.actions[0]).reason == "StageCancelled"


def test_an_invalid_spec_is_a_failed_run_not_a_crash():
    out = decide(run_body(select={"strategy": "softPositive"}), [], [], T0)
    assert out.status.phase.value == "Failed" and out.status.reason == "InvalidSpec" and out.actions == ()
