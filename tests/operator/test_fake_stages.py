"""The real operator (kopf) against the emulated API, with a kubelet whose stages are fakes: the operator's logic.

Each stage "runs" in-process and reports at once, so these tests exercise exactly what the operator does:
Jobs, status, conditions, Events, restarts, retries, suspend/resume and deletion.
"""

from __future__ import annotations

import random
import time

import kubelet as kl
import pytest
import s3server
from conftest import kubelet_running, operator_process, operator_running
from runs import run_doc, wait_for

from tpt_stages.storage import open_store

CREDS = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
# prepare + 3 rounds of think/verify/score + 2 of select/train
TWO_ROUNDS = 1 + 3 * 3 + 2 * 2
FOUR_ROUNDS = 1 + 5 * 3 + 4 * 2


def status(cluster, name) -> dict:
    return (cluster.run(name) or {}).get("status") or {}


def condition(st: dict, ctype: str) -> dict:
    return next(c for c in st["conditions"] if c["type"] == ctype)


def test_a_two_round_run_ends_succeeded_with_per_round_metrics_and_events(cluster, kube_api, tmp_path):
    with kubelet_running(cluster, tmp_path, fake=kl.default_fake), operator_running():
        cluster.secret("tpt-s3", CREDS)
        cluster.create(cluster.runs_url(), run_doc("fake-two"))
        wait_for(lambda: status(cluster, "fake-two").get("phase") == "Succeeded", 60, "the run to succeed")
        version = cluster.run("fake-two")["metadata"]["resourceVersion"]
        time.sleep(2)  # let the last Events post
        # A finished run is left alone: no reconcile (each event, each write) changes it again.
        assert cluster.run("fake-two")["metadata"]["resourceVersion"] == version, "a finished run was written"
    st = status(cluster, "fake-two")
    # The run lives on the real API server: the front answered with its copy.
    assert kube_api.get("/apis/tpt.dev/v1alpha1/namespaces/default/selfimprovementruns/fake-two")["status"] == st
    assert st["reason"] == "Completed" and st["observedGeneration"] == 1
    assert [r["round"] for r in st["rounds"]] == [0, 1, 2]
    assert [r["pass1"] for r in st["rounds"]] == [0.2, 0.3, 0.4]
    assert st["rounds"][0]["funnel"]["selected"] == 8 and st["rounds"][1]["modelUri"].endswith("round-01/model")
    assert condition(st, "Succeeded")["status"] == "True" and condition(st, "Progressing")["status"] == "False"
    names = sorted(j["metadata"]["name"] for j in cluster.jobs())
    assert len(names) == TWO_ROUNDS and "fake-two-r00-prepare-a0" in names and "fake-two-r02-score-a0" in names
    assert all(n == 1 for n in cluster.job_creations().values())
    reasons = [e["reason"] for e in cluster.events() if e["involvedObject"]["name"] == "fake-two"]
    assert reasons.count("StageStarted") == TWO_ROUNDS and reasons.count("StageSucceeded") == TWO_ROUNDS
    assert reasons.count("RunSucceeded") == 1


@pytest.mark.slow
def test_killing_the_operator_at_random_moments_changes_nothing(cluster, tmp_path):
    """Chaos: the operator process is SIGKILLed at 20+ random moments and started again while 3 four-round runs
    progress; the same metrics, and no Job created twice.

    Each kill lands 0-1.5 s after the operator has started (its start-up handler ran: it is listing, watching,
    reconciling, creating Jobs, writing status), and while the runs are still going: a stage takes 4 s, so a run
    lasts at least 24 x 4 s = 96 s, longer than 20 kill cycles. About 2 minutes, mostly waiting."""
    rng = random.Random(7)
    names = ["chaos-a", "chaos-b", "chaos-c"]
    done = lambda: all(status(cluster, n).get("phase") == "Succeeded" for n in names)  # noqa: E731
    (tmp_path / "kubelet").mkdir()
    logs = []
    with kubelet_running(cluster, tmp_path / "kubelet", fake=kl.default_fake, fake_seconds=4.0):
        cluster.secret("tpt-s3", CREDS)
        for name in names:
            cluster.create(cluster.runs_url(), run_doc(name, rounds=4))
        while len(logs) < 20:
            logs.append(tmp_path / f"operator-{len(logs)}.log")
            with operator_process(logs[-1]):
                wait_for(lambda: "tpt-operator configured" in logs[-1].read_text(), 60, "the operator to start")
                time.sleep(rng.uniform(0.0, 1.5))
            assert not done(), f"the runs finished after {len(logs)} kills"
            time.sleep(rng.uniform(0.0, 0.3))  # the kubelet goes on while the operator is down
        with operator_process(tmp_path / "operator-last.log"):
            wait_for(done, 240, "every run")
    created = [log.read_text().count("created job") for log in logs]
    print(f"chaos: {len(logs)} kills; Jobs created by each killed operator: {created}")
    assert sum(created) > 0  # the kills interrupted an operator at work, not only at start-up
    for name in names:
        st = status(cluster, name)
        assert [r["pass1"] for r in st["rounds"]] == [0.2, 0.3, 0.4, 0.5, 0.6]
        assert len([j for j in cluster.jobs() if j["metadata"]["labels"]["tpt.dev/run"] == name]) == FOUR_ROUNDS
    assert all(n == 1 for n in cluster.job_creations().values()), cluster.job_creations()


def test_a_stage_that_keeps_failing_fails_the_run_with_the_reason(cluster, tmp_path):
    def fake(stage, rnd, shard, job):
        if stage == "verify":
            return 1, "Traceback (most recent call last):\nValueError: grader exploded"
        return kl.default_fake(stage, rnd, shard, job)

    with kubelet_running(cluster, tmp_path, fake=fake), operator_running():
        cluster.secret("tpt-s3", CREDS)
        cluster.create(cluster.runs_url(), run_doc("failing", maxAttempts=2))
        wait_for(lambda: status(cluster, "failing").get("phase") == "Failed", 60, "the run to fail")
        time.sleep(0.5)
    st = status(cluster, "failing")
    assert st["reason"] == "AttemptsExhausted" and st["stage"] == "verify" and st["attempt"] == 1
    assert "grader exploded" in st["message"] and "StageFailed" in st["message"]
    failed = condition(st, "Failed")
    assert (
        failed["status"] == "True"
        and failed["reason"] == "AttemptsExhausted"
        and "grader exploded" in failed["message"]
    )
    verify_jobs = sorted(j["metadata"]["name"] for j in cluster.jobs() if "verify" in j["metadata"]["name"])
    assert verify_jobs == ["failing-r00-verify-a0", "failing-r00-verify-a1"]
    reasons = [e["reason"] for e in cluster.events() if e["involvedObject"]["name"] == "failing"]
    assert reasons.count("StageFailed") == 2 and "RunFailed" in reasons


def test_a_user_error_exit_2_is_not_retried_by_the_job_and_says_why(cluster, tmp_path):
    def fake(stage, rnd, shard, job):
        return (
            (2, "error: task.train: file not found") if stage == "prepare" else kl.default_fake(stage, rnd, shard, job)
        )

    with kubelet_running(cluster, tmp_path, fake=fake), operator_running():
        cluster.secret("tpt-s3", CREDS)
        cluster.create(cluster.runs_url(), run_doc("baddata", maxAttempts=1))
        wait_for(lambda: status(cluster, "baddata").get("phase") == "Failed", 60, "the run to fail")
    st = status(cluster, "baddata")
    assert "InvalidInput" in st["message"] and "file not found" in st["message"]


def test_a_stuck_pod_says_why_in_the_condition(cluster, tmp_path):
    with kubelet_running(cluster, tmp_path, fake=kl.default_fake), operator_running():
        cluster.create(cluster.runs_url(), run_doc("nosecret"))  # the Secret does not exist (yet)
        st = wait_for(lambda: status(cluster, "nosecret").get("reason") == "CreateContainerConfigError"
                      and status(cluster, "nosecret"), 30, "the stuck reason")  # fmt: skip
        assert 'secret "tpt-s3" not found' in condition(st, "Progressing")["message"]
        cluster.secret("tpt-s3", CREDS)
        wait_for(lambda: status(cluster, "nosecret").get("phase") == "Succeeded", 60, "the run to succeed")


def test_suspend_deletes_the_running_job_and_resume_continues(cluster, tmp_path):
    with kubelet_running(cluster, tmp_path, fake=kl.default_fake, fake_seconds=1.0), operator_running():
        cluster.secret("tpt-s3", CREDS)
        cluster.create(cluster.runs_url(), run_doc("pausable", rounds=1))
        wait_for(lambda: status(cluster, "pausable").get("stage") == "think", 30, "think to start")
        cluster.patch(f"{cluster.runs_url()}/pausable", {"spec": {"suspend": True}})
        st = wait_for(lambda: status(cluster, "pausable").get("phase") == "Suspended" and status(cluster, "pausable"),
                      30, "suspension")  # fmt: skip
        assert condition(st, "Suspended")["status"] == "True" and st["observedGeneration"] == 2
        wait_for(lambda: not any("think" in j["metadata"]["name"] for j in cluster.jobs()), 30, "think's Job to go")
        time.sleep(1.5)
        assert status(cluster, "pausable")["phase"] == "Suspended" and status(cluster, "pausable")["stage"] == "think"
        cluster.patch(f"{cluster.runs_url()}/pausable", {"spec": {"suspend": False}})
        wait_for(lambda: status(cluster, "pausable").get("phase") == "Succeeded", 60, "the run to finish")
    reasons = [e["reason"] for e in cluster.events() if e["involvedObject"]["name"] == "pausable"]
    assert "RunSuspended" in reasons and "StageCancelled" in reasons and "RunResumed" in reasons


def test_deleting_a_run_deletes_its_jobs_and_lets_it_go(cluster, tmp_path):
    with kubelet_running(cluster, tmp_path, fake=kl.default_fake, fake_seconds=5), operator_running():
        cluster.secret("tpt-s3", CREDS)
        cluster.create(cluster.runs_url(), run_doc("doomed"))
        wait_for(lambda: cluster.jobs(), 30, "a Job")
        wait_for(lambda: "tpt.dev/finalizer" in (cluster.run("doomed")["metadata"].get("finalizers") or []), 30,
                 "the finalizer")  # fmt: skip
        cluster.delete(f"{cluster.runs_url()}/doomed")
        wait_for(lambda: cluster.run("doomed") is None, 30, "the run to go")
        assert cluster.jobs() == []


def test_deleting_a_run_that_asks_for_it_deletes_its_storage_then_lets_it_go(cluster, tmp_path, s3_bucket, monkeypatch):
    """`storage.deleteOnRunDeletion`: the finalizer holds the run while a real cleanup Job (`tpt delete`, run by
    the kubelet as a process against the real S3 server) deletes the run's directory, and only that."""
    monkeypatch.setenv("TPT_S3_ENDPOINT", s3server.ENDPOINT)
    runs = f"s3://{s3_bucket}/runs"
    mine, other = open_store(f"{runs}/default/tidy"), open_store(f"{runs}/default/other")
    for store in (mine, other):
        for key in ("spec.yaml", "status.json", "problems/train.jsonl", "round-00/think/shard-00000/train.jsonl"):
            store.write_text(key, "{}")
    storage = {"uri": runs, "secretName": "tpt-s3", "deleteOnRunDeletion": True}
    with kubelet_running(cluster, tmp_path, fake=kl.default_fake), operator_running():
        cluster.secret("tpt-s3", {k: v for k, v in s3server.KEYS.items() if k.startswith("AWS_")})
        cluster.create(cluster.runs_url(), run_doc("tidy", storage=storage))
        wait_for(lambda: status(cluster, "tidy").get("phase") == "Succeeded", 60, "the run to succeed")
        cluster.delete(f"{cluster.runs_url()}/tidy")
        wait_for(lambda: cluster.run("tidy") is None, 60, "the run to go")
    assert mine.list() == [] and len(other.list()) == 4
    reasons = [e["reason"] for e in cluster.events() if e["involvedObject"]["name"] == "tidy"]
    assert "StorageDeleted" in reasons
    wait_for(lambda: cluster.jobs() == [], 10, "the cleanup Job to go with its owner (garbage collection)")


def test_an_invalid_spec_is_refused_by_the_api_server_naming_the_field(cluster):
    """The CRD's rules, judged by the real server: the run never exists, so no operator ever sees it (a spec that
    got past them anyway fails the run with InvalidSpec: tests/unit/test_operator_observe.py)."""
    bad = run_doc("badspec")
    bad["spec"]["select"] = {"strategy": "softPositive"}  # only for code tasks: a cross-field rule
    r = cluster.http.post(cluster.runs_url(), json=bad, params={"fieldValidation": "Strict"}, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "spec.select.strategy" and "softPositive" in r.text
    assert cluster.run("badspec") is None


@pytest.mark.parametrize("rounds", [1])
def test_raising_rounds_continues_a_finished_run(cluster, tmp_path, rounds):
    with kubelet_running(cluster, tmp_path, fake=kl.default_fake), operator_running():
        cluster.secret("tpt-s3", CREDS)
        cluster.create(cluster.runs_url(), run_doc("extend", rounds=rounds))
        wait_for(lambda: status(cluster, "extend").get("phase") == "Succeeded", 60, "round 1 to finish")
        cluster.patch(f"{cluster.runs_url()}/extend", {"spec": {"rounds": rounds + 1}})
        wait_for(lambda: len(status(cluster, "extend").get("rounds", [])) == rounds + 2
                 and status(cluster, "extend").get("phase") == "Succeeded", 60, "the extra round")  # fmt: skip
