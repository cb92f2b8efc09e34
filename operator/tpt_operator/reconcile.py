"""One reconcile of one run, as a pure function: (run object, its Jobs and Pods, now) -> what to do.

The same loop as `tpt_stages.runner.run_to_end`, unrolled: observe the Job of the stage the status points at,
ask the planner, and hand back its actions, the new status and the Events about the status. The edges
(`handlers.py`) apply the actions, write the status once if it changed, and only then emit those Events, so a
reconcile that loses a write race tells nothing of it. An action's own Event (`action_event`) is emitted by
the reconcile whose action took effect (it created or deleted the Job), whether its status write wins or not:
a Job deleted by a reconcile that then lost its write is gone for the next one too, which has nothing left to
cancel, so the Event is told once and only there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tpt_operator.builders import LABEL_ATTEMPT, LABEL_ROUND, LABEL_STAGE, job_name, parse_run
from tpt_operator.observe import observe
from tpt_stages.planner import Action, Launch, Observation, StageRef, State, conditions, plan
from tpt_stages.spec import Phase, SpecError
from tpt_stages.status import RunStatus


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    observation: Observation | None = None
    changed: bool = False
    finished_stage: tuple[str, float] | None = None  # (stage, seconds) when a stage just succeeded


def now_iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def load_status(body: Mapping[str, Any]) -> RunStatus | None:
    raw = body.get("status") or {}
    if not raw.get("phase"):
        return None
    try:
        return RunStatus.model_validate(raw)
    except ValueError:
        return None


def status_document(status: RunStatus) -> dict[str, Any]:
    return status.to_document()


def _where(ref: StageRef) -> str:
    attempt = f" (attempt {ref.attempt + 1})" if ref.attempt else ""
    return f"round {ref.round} {ref.stage.value}{attempt}"


def action_event(action: Action) -> Event:
    """What to tell when `action` took effect."""
    if isinstance(action, Launch):
        return Event("Normal", "StageStarted", f"{_where(action.ref)} started ({action.shards} shards)")
    return Event("Normal", "StageCancelled", f"{_where(action.ref)} cancelled: run suspended")


def find_job(jobs: Iterable[Mapping[str, Any]], run_name: str, ref: StageRef) -> Mapping[str, Any] | None:
    name = job_name(run_name, ref)
    for job in jobs:
        if job["metadata"]["name"] == name:
            return job
    # A job found by labels (e.g. named by an older operator version) counts as the same stage.
    for job in jobs:
        labels = job["metadata"].get("labels") or {}
        if (labels.get(LABEL_ROUND), labels.get(LABEL_STAGE), labels.get(LABEL_ATTEMPT)) == (
            str(ref.round),
            ref.stage.value,
            str(ref.attempt),
        ):
            return job
    return None


def decide(
    body: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], now: datetime
) -> Outcome:
    stamp = now_iso(now)
    previous = load_status(body)
    old_doc = dict(body.get("status") or {})
    generation = (body.get("metadata") or {}).get("generation")
    try:
        run = parse_run(body)
    except SpecError as e:
        st = (previous or RunStatus()).model_copy(deep=True)
        message = str(e).replace("\n", "; ")[:1000]
        if st.reason != "InvalidSpec" or st.message != message:
            st.phase, st.reason, st.message, st.finished_at = Phase.failed, "InvalidSpec", message, stamp
            st.conditions = conditions(st.conditions, Phase.failed, "InvalidSpec", message, stamp)
        st.observed_generation = generation
        doc = status_document(st)
        events = (Event("Warning", "InvalidSpec", message),) if doc != old_doc else ()
        return Outcome(st, events=events, changed=doc != old_doc)

    base = previous or RunStatus()
    ref = StageRef(base.round, base.stage, base.attempt)
    job = find_job(list(jobs), run.name, ref)
    obs = observe(job, pods, now)
    decision = plan(run.spec, previous, obs, stamp)
    st = decision.status
    if obs.state is State.running and obs.reason and st.phase is Phase.running:
        # The planner says "running"; the pods say why it may not be: copy that into the condition.
        message = f"{_where(ref)}: {obs.reason}: {obs.message}".strip(": ")[:1000]
        st.reason, st.message = obs.reason, message
        st.conditions = conditions(st.conditions, Phase.running, obs.reason, message, stamp)
    st.observed_generation = generation
    doc = status_document(st)
    changed = doc != old_doc

    events: list[Event] = []
    finished = None
    active = previous is None or previous.phase not in (Phase.succeeded, Phase.failed)
    if obs.state is State.succeeded and changed and active:
        events.append(Event("Normal", "StageSucceeded", f"{_where(ref)} succeeded in {obs.seconds:.0f}s"))
        finished = (ref.stage.value, obs.seconds)
    if obs.state is State.failed and changed and active:
        events.append(Event("Warning", "StageFailed", f"{_where(ref)} failed: {obs.reason}: {obs.message}"[:1000]))
    if previous is None or previous.phase is not st.phase:
        if st.phase is Phase.succeeded:
            events.append(Event("Normal", "RunSucceeded", st.message))
        elif st.phase is Phase.failed:
            events.append(Event("Warning", "RunFailed", f"{st.reason}: {st.message}"))
        elif st.phase is Phase.suspended:
            events.append(Event("Normal", "RunSuspended", st.message))
        elif previous is not None and previous.phase is Phase.suspended:
            events.append(Event("Normal", "RunResumed", st.message))
    elif previous.reason != st.reason and obs.state is State.running and obs.reason:
        events.append(Event("Warning", obs.reason, st.message))
    return Outcome(st, decision.actions, tuple(events), obs, changed, finished)
