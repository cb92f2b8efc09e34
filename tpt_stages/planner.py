"""What to do next: a pure function of the spec, the status and what is observed of the current stage.

The planner knows nothing of how stages run. `tpt run` executes its actions as local processes, the operator
as Kubernetes Jobs; both feed back an `Observation` of the one stage the status points at. Stages run strictly
in sequence, so the status needs only a pointer (round, stage, attempt) plus what finished stages reported.

    round r:  [prepare, if r = 0] think -> verify -> score [-> select -> train, if r < N]

train of round r produces M_{r+1}; round N only evaluates. Everything here is deterministic given `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tpt_stages.layout import GPU_STAGES, Stage
from tpt_stages.spec import Phase, RunSpec
from tpt_stages.status import Condition, Funnel, GraderMetrics, RoundStatus, RunStatus


class State(str, Enum):
    absent = "absent"  # not started, or its Job is gone
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True)
class StageRef:
    round: int
    stage: Stage
    attempt: int

    @property
    def slug(self) -> str:
        """Stable, DNS-safe: Job names, log files and events are built from it."""
        return f"r{self.round:02d}-{self.stage.value}-a{self.attempt}"


@dataclass(frozen=True)
class Observation:
    """What an executor saw of the stage the status points at."""

    state: State
    report: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    message: str = ""
    seconds: float = 0.0
    gpus: int = 0


ABSENT = Observation(State.absent)


@dataclass(frozen=True)
class Launch:
    ref: StageRef
    shards: int


@dataclass(frozen=True)
class Cancel:
    ref: StageRef


Action = Launch | Cancel


@dataclass(frozen=True)
class Decision:
    status: RunStatus
    actions: tuple[Action, ...] = ()


def stages_of_round(spec: RunSpec, r: int) -> list[Stage]:
    seq = [Stage.prepare] if r == 0 else []
    seq += [Stage.think, Stage.verify, Stage.score]
    if r < spec.rounds:
        seq += [Stage.select, Stage.train]
    return seq


def next_stage(spec: RunSpec, r: int, stage: Stage) -> tuple[int, Stage] | None:
    seq = stages_of_round(spec, r)
    if stage in seq and seq.index(stage) + 1 < len(seq):
        return r, seq[seq.index(stage) + 1]
    if stage in seq and r + 1 <= spec.rounds:
        return r + 1, Stage.think
    return None


def shards_for(spec: RunSpec, stage: Stage) -> int:
    return spec.think.shards if stage in (Stage.think, Stage.verify) else 1


def stop_rule_fires(spec: RunSpec, rounds: list[RoundStatus]) -> bool:
    """True when the last `patience` rounds did not beat the best before them by more than `minDelta`."""
    rule = spec.stop_rule
    pass1 = [x.pass1 for x in sorted(rounds, key=lambda x: x.round) if x.pass1 is not None]
    if rule is None or len(pass1) <= rule.patience:
        return False
    before, recent = pass1[: -rule.patience], pass1[-rule.patience :]
    return max(recent) <= max(before) + rule.min_delta


def plan(spec: RunSpec, status: RunStatus | None, obs: Observation, now: str) -> Decision:
    st = (status or RunStatus()).model_copy(deep=True)
    st.started_at = st.started_at or now
    ref = StageRef(st.round, st.stage, st.attempt)

    if st.phase is Phase.failed:
        return Decision(st)
    if st.phase is Phase.succeeded:
        # A finished run continues when its rounds were raised: the next stage after the last one done.
        nxt = next_stage(spec, st.round, st.stage) if st.reason == "Completed" else None
        if nxt is None:
            return Decision(st)
        st.finished_at = None
        return _launch(spec, st, StageRef(*nxt, 0), now, "RoundsExtended", "rounds raised: continuing")

    if spec.suspend:
        actions = (Cancel(ref),) if obs.state is State.running else ()
        _set(st, Phase.suspended, "Suspended", f"suspended at {_where(ref)}; resume continues from there", now)
        return Decision(st, actions)

    if obs.state is State.running:
        _set(st, Phase.running, "StageRunning", f"{_where(ref)} running", now)
        return Decision(st)

    if obs.state is State.absent:
        if st.stage not in stages_of_round(spec, st.round):
            # The spec was shortened below where the run stands.
            return _finish(st, Phase.succeeded, "Completed", f"finished after round {st.round}", now)
        return _launch(spec, st, ref, now, "StageStarted", f"{_where(ref)} started")

    if obs.state is State.failed:
        why = f"{obs.reason}: {obs.message}".strip(": ") or "failed"
        if obs.reason == "InvalidInput":
            # The stage exited 2: its input is wrong (a bad spec, missing model or data), and another attempt
            # would fail the same way after paying for a pod, an image pull and a model load again.
            return _finish(st, Phase.failed, "InvalidInput", f"{_where(ref)} failed: {why}", now)
        if ref.attempt + 1 >= spec.max_attempts:
            return _finish(
                st, Phase.failed, "AttemptsExhausted", f"{_where(ref)} failed {spec.max_attempts} times: {why}", now
            )
        retry = StageRef(ref.round, ref.stage, ref.attempt + 1)
        return _launch(spec, st, retry, now, "StageRetrying", f"{_where(ref)} failed ({why}); retrying")

    # Succeeded: remember what it reported, then move on.
    _record(spec, st, ref, obs)
    if ref.stage is Stage.score and stop_rule_fires(spec, st.rounds):
        return _finish(st, Phase.succeeded, "StopRule", f"Pass@1 stopped improving at round {ref.round}", now)
    if ref.stage is Stage.select and not obs.report.get("selected"):
        return _finish(st, Phase.failed, "NoTrainingData", f"no sample of round {ref.round} survived pruning", now)
    nxt = next_stage(spec, ref.round, ref.stage)
    if nxt is None:
        return _finish(st, Phase.succeeded, "Completed", f"all {spec.rounds} rounds done", now)
    return _launch(spec, st, StageRef(*nxt, 0), now, "StageStarted", f"{_where(StageRef(*nxt, 0))} started")


def _where(ref: StageRef) -> str:
    attempt = f" (attempt {ref.attempt + 1})" if ref.attempt else ""
    return f"round {ref.round} {ref.stage.value}{attempt}"


def _launch(spec: RunSpec, st: RunStatus, ref: StageRef, now: str, reason: str, message: str) -> Decision:
    st.round, st.stage, st.attempt = ref.round, ref.stage, ref.attempt
    _set(st, Phase.running, reason, message, now)
    return Decision(st, (Launch(ref, shards_for(spec, ref.stage)),))


def _finish(st: RunStatus, phase: Phase, reason: str, message: str, now: str) -> Decision:
    _set(st, phase, reason, message, now)
    st.finished_at = now
    return Decision(st)


def _round(st: RunStatus, r: int) -> RoundStatus:
    found = st.round_status(r)
    if found is None:
        found = RoundStatus(round=r)
        st.rounds = sorted([*st.rounds, found], key=lambda x: x.round)
    return found


def _record(spec: RunSpec, st: RunStatus, ref: StageRef, obs: Observation) -> None:
    report = obs.report
    rs = _round(st, ref.round)
    key = ref.stage.value
    rs.seconds[key] = round(rs.seconds.get(key, 0.0) + obs.seconds, 3)
    st.stage_seconds[key] = round(st.stage_seconds.get(key, 0.0) + obs.seconds, 3)
    if ref.stage in GPU_STAGES and obs.gpus:
        st.gpu_seconds[key] = round(st.gpu_seconds.get(key, 0.0) + obs.seconds * obs.gpus, 3)
    for name, uri in report.get("artifacts", {}).items():
        st.artifacts[name] = uri
    if ref.stage is Stage.think:
        rs.model_uri = report.get("model_uri", rs.model_uri)
    elif ref.stage is Stage.score:
        graders = {g: GraderMetrics.model_validate(m) for g, m in report.get("graders", {}).items()}
        primary = graders.get(report.get("primary", ""))
        rs.k, rs.test_problems = report.get("k"), report.get("test_problems")
        rs.graders = graders
        rs.pass1, rs.passk, rs.correctk = (primary.pass1, primary.passk, primary.correctk) if primary else (None,) * 3
        rs.grader_disagreements = report.get("disagreements")
        rs.infra_errors = report.get("infra_errors")
        if "funnel" in report:
            rs.funnel = Funnel.model_validate(report["funnel"])
    elif ref.stage is Stage.select and rs.funnel is not None:
        rs.funnel.selected = int(report.get("selected", 0))
    elif ref.stage is Stage.train and report.get("model_uri"):
        _round(st, ref.round + 1).model_uri = report["model_uri"]


_CONDITIONS = ("Ready", "Progressing", "Succeeded", "Failed", "Suspended")


def _set(st: RunStatus, phase: Phase, reason: str, message: str, now: str) -> None:
    st.phase, st.reason, st.message = phase, reason, message
    st.conditions = conditions(st.conditions, phase, reason, message, now)


def conditions(previous: list[Condition], phase: Phase, reason: str, message: str, now: str) -> list[Condition]:
    """Kubernetes conditions for a phase; `lastTransitionTime` moves only when a condition's status does."""
    true_for = {
        "Ready": phase is not Phase.failed,
        "Progressing": phase in (Phase.pending, Phase.running),
        "Succeeded": phase is Phase.succeeded,
        "Failed": phase is Phase.failed,
        "Suspended": phase is Phase.suspended,
    }
    old = {c.type: c for c in previous}
    out = []
    for ctype in _CONDITIONS:
        status = "True" if true_for[ctype] else "False"
        keep = old.get(ctype)
        since = keep.last_transition_time if keep is not None and keep.status == status else now
        out.append(
            Condition(
                type=ctype,
                status=status,
                reason=reason if status == "True" or ctype == "Ready" else "",
                message=message if status == "True" or ctype == "Ready" else "",
                last_transition_time=since,
            )
        )
    # Kubernetes requires a non-empty reason on every condition.
    return [c.model_copy(update={"reason": c.reason or "NotApplicable"}) for c in out]
