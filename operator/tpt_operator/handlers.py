"""Every kopf registration of the operator, in one file; each handler is a few lines around `reconcile`.

What triggers a reconcile of a run: any event of the run itself (create, spec change, our own status write),
any event of one of its Jobs or Pods (found through kopf indexes keyed by the `tpt.dev/run` label), and a
periodic timer as a safety net. All of them call the same `reconcile`, which is safe to run from a stale view
and concurrently: it derives everything from the run's status and the indexed Jobs, its actions are
idempotent (deterministic names, AlreadyExists and NotFound count as success), and its status write is
conditional on the resourceVersion it started from. Nothing about a run is kept in memory beyond kopf's own
indexes, so a restart at any instant resumes from the status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import kopf

from tpt_operator import GROUP, PLURAL, VERSION, kube, metrics
from tpt_operator.builders import CLEANUP, LABEL_RUN, LABEL_STAGE, build, cleanup_job, cleanup_job_name, job_name
from tpt_operator.config import OperatorConfig
from tpt_operator.config import load as load_config
from tpt_operator.observe import job_gpus, job_outcome
from tpt_operator.reconcile import action_event, decide
from tpt_stages.planner import Cancel, Launch, State

FINALIZER = "tpt.dev/finalizer"
RESYNC_SECONDS = load_config().resync_seconds


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    config = load_config()
    memo.config = config
    memo.settings = settings
    # Our own names on the run object; progress in annotations, because the status is replaced as a whole.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tpt.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="tpt.dev", key="last-handled-configuration"
    )
    settings.posting.reporting_component = "tpt-operator"
    # Only our Jobs and Pods: server-side label selectors keep the watches small on a busy cluster.
    settings.watching.label_selectors["batch/v1/jobs"] = LABEL_RUN
    settings.watching.label_selectors["v1/pods"] = LABEL_RUN
    # Explicit namespaces or the whole cluster: no need to list namespaces (and no RBAC for it).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    metrics.serve(config.metrics_port)
    logger.info("tpt-operator configured: %s", config.model_dump(by_alias=True, exclude_none=True))


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: $KUBECONFIG, read now (the `kubernetes` package, which kopf
    would otherwise use, reads it once at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.index(GROUP, VERSION, PLURAL)
def tpt_runs(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): dict(body)}


def _job_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What observation needs of a Job (the pod template is dropped: it holds the whole spec document)."""
    spec = body.get("spec") or {}
    return {
        "metadata": {k: body["metadata"].get(k) for k in ("name", "namespace", "uid", "labels", "annotations",
                                                          "creationTimestamp", "deletionTimestamp")},
        "spec": {"suspend": spec.get("suspend"), "parallelism": spec.get("parallelism")},
        "status": dict(body.get("status") or {}),
        "gpus": job_gpus(body),
    }  # fmt: skip


@kopf.index("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
def tpt_jobs(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict:
    return {(namespace, labels[LABEL_RUN]): _job_summary(body)}


@kopf.index("", "v1", "pods", labels={LABEL_RUN: kopf.PRESENT})
def tpt_pods(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict:
    keep = ("name", "labels", "annotations", "ownerReferences")
    return {(namespace, labels[LABEL_RUN]): {"metadata": {k: body["metadata"].get(k) for k in keep},
                                              "status": dict(body.get("status") or {})}}  # fmt: skip


async def reconcile(
    body: Mapping[str, Any], jobs: kopf.Index, pods: kopf.Index, memo: kopf.Memo, logger: logging.Logger
) -> None:
    """Observe, plan, apply, write the status once if it changed, then tell (Events, metrics)."""
    started = time.perf_counter()
    meta = body["metadata"]
    namespace, name = meta.get("namespace") or "default", meta["name"]
    if meta.get("deletionTimestamp"):
        return
    key = (namespace, name)
    run_jobs = list(jobs.get(key, []))
    out = decide(body, run_jobs, list(pods.get(key, [])), datetime.now(timezone.utc))
    config: OperatorConfig = memo.config
    settings = memo.settings

    for action in out.actions:
        took_effect = False
        if isinstance(action, Launch):
            for obj in build(body, action, config):
                created = await kube.create(obj, settings, logger)
                if created and obj["kind"] == "Job":
                    took_effect = True
                    metrics.JOBS_CREATED.labels(action.ref.stage.value).inc()
                    logger.info("created job %s", obj["metadata"]["name"])
        elif isinstance(action, Cancel):
            took_effect = await _delete_stage(namespace, job_name(name, action.ref), settings, logger)
        if took_effect:
            event = action_event(action)
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)

    if out.changed:
        rv = meta.get("resourceVersion")
        written = await kube.write_status(namespace, name, rv, out.status.to_document(), settings, logger)
        metrics.STATUS_WRITES.labels("ok" if written else "conflict").inc()
        if not written:
            # Someone (most likely a newer reconcile of ours) moved the run on: its event reconciles again.
            logger.debug("status of %s/%s changed underneath; skipping this reconcile's events", namespace, name)
            return
        for event in out.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        obs = out.observation
        if out.finished_stage is not None:
            metrics.STAGE_SECONDS.labels(out.finished_stage[0]).observe(out.finished_stage[1])
        if obs is not None and obs.state is State.failed:
            metrics.JOB_FAILURES.labels(out.status.stage.value, obs.reason or "Failed").inc()
    metrics.set_phase(namespace, name, out.status.phase.value)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)


async def _delete_stage(namespace: str, job: str, settings: kopf.OperatorSettings, logger: logging.Logger) -> bool:
    """Delete a stage's Job (and Service); True if this call deleted the Job, False if it was already gone."""
    deleted = await kube.delete("batch/v1", "jobs", namespace, job, settings, logger)
    if "-train-a" in job:
        # Multi-node training has a headless Service of the same name; absent otherwise (404 is fine).
        await kube.delete("v1", "services", namespace, job, settings, logger)
    return deleted


@kopf.on.event(GROUP, VERSION, PLURAL)
async def run_changed(
    event: Mapping[str, Any], body: kopf.Body, tpt_jobs: kopf.Index, tpt_pods: kopf.Index, memo: kopf.Memo,
    logger: logging.Logger, **_: Any,
) -> None:  # fmt: skip
    if event.get("type") == "DELETED":
        metrics.set_phase(body["metadata"].get("namespace") or "default", body["metadata"]["name"], None)
        return
    await reconcile(dict(body), tpt_jobs, tpt_pods, memo, logger)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={LABEL_RUN: kopf.PRESENT})
async def child_changed(
    namespace: str, labels: Mapping[str, str], tpt_runs: kopf.Index, tpt_jobs: kopf.Index, tpt_pods: kopf.Index,
    memo: kopf.Memo, logger: logging.Logger, **_: Any,
) -> None:  # fmt: skip
    """A Job or Pod of a run changed: reconcile its run (found through the run label)."""
    for run in tpt_runs.get((namespace, labels.get(LABEL_RUN, "")), []):
        await reconcile(run, tpt_jobs, tpt_pods, memo, logger)


def _active(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") not in ("Succeeded", "Failed")


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, when=_active)
async def resync(
    body: kopf.Body, tpt_jobs: kopf.Index, tpt_pods: kopf.Index, memo: kopf.Memo, logger: logging.Logger, **_: Any
) -> None:
    """A safety net for a missed watch event; also ages `WaitingForReports` into `ReportMissing`."""
    await reconcile(dict(body), tpt_jobs, tpt_pods, memo, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def run_deleted(
    body: kopf.Body, namespace: str, name: str, tpt_jobs: kopf.Index, tpt_pods: kopf.Index, memo: kopf.Memo,
    logger: logging.Logger, **_: Any,
) -> None:  # fmt: skip
    """Delete the run's Jobs now (ownerReferences would too, later). Its storage is kept, unless the spec says
    `storage.deleteOnRunDeletion`: then, once no pod of the run is left to write there, a cleanup Job deletes
    the run's directory, and the finalizer holds the run until that Job has finished (docs/operator.md)."""
    key, cleanup = (namespace, name), cleanup_job_name(name)
    stage_jobs = [j for j in tpt_jobs.get(key, []) if j["metadata"]["name"] != cleanup]
    for job in stage_jobs:
        await _delete_stage(namespace, job["metadata"]["name"], memo.settings, logger)
    metrics.set_phase(namespace, name, None)
    if not (body.get("spec") or {}).get("storage", {}).get("deleteOnRunDeletion"):
        return
    if stage_jobs or any(p["metadata"]["labels"].get(LABEL_STAGE) != CLEANUP for p in tpt_pods.get(key, [])):
        raise kopf.TemporaryError("waiting for the run's pods to stop before deleting its storage", delay=2)
    job = next((j for j in tpt_jobs.get(key, []) if j["metadata"]["name"] == cleanup), None)
    if job is None:
        await kube.create(cleanup_job(body, memo.config), memo.settings, logger)
        raise kopf.TemporaryError(f"deleting the run's storage (job {cleanup})", delay=2)
    outcome = job_outcome(job)
    if outcome is State.running:
        raise kopf.TemporaryError(f"deleting the run's storage (job {cleanup})", delay=2)
    if outcome is State.failed:  # keep no run hostage to its storage: say so, and let it go
        kopf.warn(body, reason="StorageNotDeleted", message=f"job {cleanup} failed: its pod's log says why")
    else:
        kopf.info(body, reason="StorageDeleted", message=f"deleted the run's storage (job {cleanup})")
