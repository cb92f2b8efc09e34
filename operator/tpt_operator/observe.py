"""A stage's Job and its Pods -> the planner's `Observation`. Pure: dicts in, a frozen dataclass out.

The Job says whether the stage finished; the Pods say why it is stuck or failed (ImagePullBackOff,
Unschedulable, OOMKilled, ...) and carry what it reported: every stage writes a small JSON report to
/dev/termination-log, which Kubernetes keeps as the container's `state.terminated.message`. Sharded stages
report once per completion index and the reports are merged exactly as `tpt run` merges them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from tpt_stages.planner import ABSENT, Observation, State
from tpt_stages.stage import merge_shard_reports

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
GPU = "nvidia.com/gpu"
# A Job can report Complete (or Failed) a moment before the last pod's status (with its report, or its exit
# status) reaches the operator: Jobs and Pods come on separate watches.
REPORT_GRACE_SECONDS = 60.0
# Waiting reasons that mean the stage will not make progress by itself.
STUCK_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def job_outcome(job: Mapping[str, Any]) -> State:
    """Succeeded, failed or running by the Job's conditions alone: for a Job that reports nothing (cleanup)."""
    if _condition(job, "Failed") is not None:
        return State.failed
    if _condition(job, "Complete") is not None:
        return State.succeeded
    return State.running


def job_gpus(job: Mapping[str, Any]) -> int:
    """GPUs the Job's pods hold at once: per-pod GPU limits times parallelism (or a summary's `gpus`)."""
    if "gpus" in job:
        return int(job["gpus"])
    spec = job.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    per_pod = sum(int((c.get("resources") or {}).get("limits", {}).get(GPU, 0)) for c in pod.get("containers") or [])
    return per_pod * int(spec.get("parallelism") or 1)


def pods_of(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    name = job["metadata"]["name"]
    uid = job["metadata"].get("uid")
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        owners = meta.get("ownerReferences") or []
        if any(labels.get(k) == name for k in JOB_NAME_LABELS) or any(
            o.get("kind") == "Job" and (o.get("uid") == uid if uid else o.get("name") == name) for o in owners
        ):
            out.append(pod)
    return out


def _index(pod: Mapping[str, Any]) -> int:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or (meta.get("labels") or {}).get(INDEX_ANNOTATION)
    return int(raw) if raw is not None else 0


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _report(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON report in a terminated container's message (the stage's, not a helper's)."""
    for cs in reversed(_statuses(pod)):
        message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
        if not message:
            continue
        try:
            report = json.loads(message)
        except ValueError:
            continue
        if isinstance(report, dict):
            return report
    return None


def reports(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], shards: int) -> dict[int, dict[str, Any]]:
    """One report per completion index below `shards`, from a succeeded pod of that index."""
    found: dict[int, dict[str, Any]] = {}
    for pod in pods_of(job, pods):
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        idx = _index(pod)
        report = _report(pod)
        if idx < shards and report is not None:
            found[idx] = report
    return found


def pod_problem(pods: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """The most telling reason a stage's pods are not progressing or failed, and a short message."""
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        for cs in _statuses(pod):
            state = cs.get("state") or {}
            term = state.get("terminated") or {}
            if term.get("reason") == "OOMKilled":
                return "OOMKilled", f"pod {name} container {cs.get('name')} ran out of memory"
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                return waiting["reason"], f"pod {name}: {waiting.get('message') or waiting['reason']}"[:400]
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason"):
                return c["reason"], f"pod {name}: {c.get('message') or c['reason']}"[:400]
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        for cs in _statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                tail = " | ".join(line for line in (term.get("message") or "").splitlines()[-3:] if line.strip())
                why = f"pod {name} container {cs.get('name')} exited {term.get('exitCode')}"
                return ("InvalidInput" if term.get("exitCode") == 2 else "StageFailed"), f"{why}: {tail}"[:600]
    return "", ""


def observe(
    job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> Observation:
    """What the planner needs to know of one stage's Job."""
    if job is None:
        return ABSENT
    now = now or datetime.now(timezone.utc)
    pods = pods_of(job, list(pods))
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    shards = int((meta.get("annotations") or {}).get("tpt.dev/shards") or 1)
    started = parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp"))
    gpus = job_gpus(job)

    if meta.get("deletionTimestamp"):
        return Observation(State.running, reason="Terminating", message=f"job {meta.get('name')} is being deleted")

    failed = _condition(job, "Failed")
    if failed is not None:
        reason, message = pod_problem(pods)
        job_reason = failed.get("reason") or "Failed"
        ended = parse_time(failed.get("lastTransitionTime")) or now
        if not reason and job_reason != "DeadlineExceeded" and (now - ended).total_seconds() < REPORT_GRACE_SECONDS:
            # The failed pod's status (exit status 2 means the user's input, not a crash) has not arrived yet.
            return Observation(State.running, reason="WaitingForPods", message=f"job {meta.get('name')} failed")
        if job_reason == "DeadlineExceeded" or not reason:
            reason = job_reason
            message = failed.get("message") or message
        seconds = max(0.0, (ended - started).total_seconds()) if started else 0.0
        return Observation(State.failed, reason=reason, message=message, seconds=seconds, gpus=gpus)

    complete = _condition(job, "Complete")
    if complete is not None:
        found = reports(job, pods, shards)
        ended = parse_time(status.get("completionTime")) or parse_time(complete.get("lastTransitionTime")) or now
        seconds = max(0.0, (ended - started).total_seconds()) if started else 0.0
        if len(found) < shards:
            missing = sorted(set(range(shards)) - set(found))
            if (now - ended).total_seconds() < REPORT_GRACE_SECONDS:
                return Observation(State.running, reason="WaitingForReports", message=f"shards {missing}")
            return Observation(
                State.failed,
                reason="ReportMissing",
                message=f"job {meta.get('name')} completed but shards {missing} left no report",
                seconds=seconds,
                gpus=gpus,
            )
        report = merge_shard_reports([found[i] for i in range(shards)])
        return Observation(State.succeeded, report=report, seconds=seconds, gpus=gpus)

    if (job.get("spec") or {}).get("suspend") or _condition(job, "Suspended"):
        return Observation(State.running, reason="Queued", message=f"job {meta.get('name')} waits for admission")
    reason, message = pod_problem(pods)
    if reason in ("StageFailed", "InvalidInput"):
        reason = "PodFailed"  # the Job retries the pod (backoffLimit): not yet the stage's failure
    return Observation(State.running, reason=reason, message=message)
