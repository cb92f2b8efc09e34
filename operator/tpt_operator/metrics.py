"""Prometheus metrics of the operator, served on `metricsPort` (the Helm chart's ServiceMonitor scrapes it).

Counters and histograms only grow within one process; the per-phase gauge is recomputed from the runs the
operator has seen, so it stays right across restarts without any state of its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS = Gauge("tpt_runs", "SelfImprovementRuns by phase", ["phase"], registry=REGISTRY)
STAGE_SECONDS = Histogram(
    "tpt_stage_duration_seconds",
    "Wall time of succeeded stages (Job start to completion)",
    ["stage"],
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400),
    registry=REGISTRY,
)
JOB_FAILURES = Counter("tpt_job_failures_total", "Stage Jobs that failed, by stage and reason", ["stage", "reason"],
                       registry=REGISTRY)  # fmt: skip
JOBS_CREATED = Counter("tpt_jobs_created_total", "Stage Jobs created, by stage", ["stage"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram(
    "tpt_reconcile_duration_seconds",
    "Time of one reconcile (observe, plan, apply, write status)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
STATUS_WRITES = Counter("tpt_status_writes_total", "Status writes, by result", ["result"], registry=REGISTRY)

_phases: dict[tuple[str, str], str] = {}
PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")


def set_phase(namespace: str, name: str, phase: str | None) -> None:
    """Record a run's phase (None: the run is gone) and refresh the per-phase gauge."""
    if phase is None:
        _phases.pop((namespace, name), None)
    else:
        _phases[(namespace, name)] = phase
    for p in PHASES:
        RUNS.labels(p).set(sum(1 for v in _phases.values() if v == p))


def serve(port: int) -> None:
    if port:
        start_http_server(port, registry=REGISTRY)
