"""Every planner transition, table-driven. The planner is pure: (spec, status, observation, now) -> decision."""

import pytest

from tpt_stages.layout import Stage
from tpt_stages.planner import (
    ABSENT,
    Cancel,
    Launch,
    Observation,
    StageRef,
    State,
    next_stage,
    plan,
    stop_rule_fires,
)
from tpt_stages.spec import Phase, RunSpec
from tpt_stages.status import RoundStatus, RunStatus

NOW = "2026-11-23T12:00:00+00:00"
LATER = "2026-11-23T12:05:00+00:00"


def spec(**overrides) -> RunSpec:
    doc = {"model": {"uri": "m"}, "task": {"kind": "arith"}, "rounds": 2, **overrides}
    return RunSpec.model_validate(doc)


def at(r: int, stage: Stage, attempt: int = 0, **kw) -> RunStatus:
    return RunStatus(phase=Phase.running, round=r, stage=stage, attempt=attempt, **kw)


def ok(**report) -> Observation:
    return Observation(State.succeeded, report=report, seconds=2.0)


SCORE = {
    "primary": "strict",
    "k": 4,
    "test_problems": 10,
    "graders": {"strict": {"pass1": 0.3, "passk": 0.6, "correctk": 0.5}},
}


def test_a_fresh_run_launches_prepare():
    d = plan(spec(), None, ABSENT, NOW)
    assert d.actions == (Launch(StageRef(0, Stage.prepare, 0), 1),)
    assert d.status.phase is Phase.running and d.status.started_at == NOW


@pytest.mark.parametrize(
    ("r", "stage", "expected"),
    [
        (0, Stage.prepare, (0, Stage.think)),
        (0, Stage.think, (0, Stage.verify)),
        (0, Stage.verify, (0, Stage.score)),
        (0, Stage.score, (0, Stage.select)),
        (0, Stage.select, (0, Stage.train)),
        (0, Stage.train, (1, Stage.think)),
        (1, Stage.train, (2, Stage.think)),
        (2, Stage.score, None),  # the last round only evaluates
    ],
)
def test_the_stage_sequence(r, stage, expected):
    assert next_stage(spec(), r, stage) == expected


def test_a_committed_stage_launches_the_next_with_its_shards():
    d = plan(spec(think={"shards": 3}), at(0, Stage.prepare), ok(), NOW)
    assert d.actions == (Launch(StageRef(0, Stage.think, 0), 3),)
    d = plan(spec(think={"shards": 3}), at(0, Stage.verify), ok(), NOW)
    assert d.actions == (Launch(StageRef(0, Stage.score, 0), 1),)


def test_score_reports_become_round_metrics():
    d = plan(spec(), at(1, Stage.score), ok(**SCORE, funnel={"generated": 40, "correct": 9, "unique": 5}), NOW)
    rs = d.status.round_status(1)
    assert (rs.pass1, rs.passk, rs.correctk, rs.k) == (0.3, 0.6, 0.5, 4)
    assert rs.funnel.generated == 40 and rs.seconds == {"score": 2.0}
    assert d.status.stage_seconds == {"score": 2.0}


def test_train_reports_the_next_rounds_model_and_gpu_seconds():
    obs = Observation(State.succeeded, report={"model_uri": "s3://b/r/round-01/model"}, seconds=10, gpus=2)
    d = plan(spec(), at(0, Stage.train), obs, NOW)
    assert d.status.round_status(1).model_uri == "s3://b/r/round-01/model"
    assert d.status.gpu_seconds == {"train": 20}


def test_a_running_stage_waits():
    d = plan(spec(), at(0, Stage.think), Observation(State.running), NOW)
    assert d.actions == () and d.status.phase is Phase.running


def test_a_failed_stage_is_retried_as_a_new_attempt():
    d = plan(spec(), at(0, Stage.think), Observation(State.failed, reason="OOMKilled", message="pod x"), NOW)
    assert d.actions == (Launch(StageRef(0, Stage.think, 1), 1),)
    assert d.status.reason == "StageRetrying" and "OOMKilled" in d.status.message


def test_attempts_exhausted_fails_the_run_with_the_reason():
    d = plan(spec(maxAttempts=2), at(0, Stage.think, attempt=1), Observation(State.failed, reason="Boom"), NOW)
    assert d.actions == ()
    assert d.status.phase is Phase.failed and d.status.reason == "AttemptsExhausted"
    assert "Boom" in d.status.message and d.status.finished_at == NOW
    failed = {c.type: c for c in d.status.conditions}["Failed"]
    assert failed.status == "True" and failed.reason == "AttemptsExhausted"


def test_a_user_error_fails_the_run_at_once_with_attempts_left():
    """Exit 2 (InvalidInput) says the input is wrong: no retry helps, whatever maxAttempts allows."""
    bad = Observation(State.failed, reason="InvalidInput", message="shard 0 exited 2: error: model.uri './x': no model")
    d = plan(spec(maxAttempts=3), at(0, Stage.think), bad, NOW)
    assert d.actions == ()
    assert d.status.phase is Phase.failed and d.status.reason == "InvalidInput"
    assert "model.uri './x'" in d.status.message and "round 0 think" in d.status.message


def test_the_last_score_completes_the_run():
    d = plan(spec(), at(2, Stage.score), ok(**SCORE), NOW)
    assert d.actions == () and d.status.phase is Phase.succeeded and d.status.reason == "Completed"


def test_nothing_selected_fails_the_run():
    d = plan(spec(), at(0, Stage.select), ok(selected=0), NOW)
    assert d.status.phase is Phase.failed and d.status.reason == "NoTrainingData"


@pytest.mark.parametrize(
    ("history", "patience", "delta", "fires"),
    [
        ([0.1, 0.2, 0.3], 1, 0.0, False),
        ([0.1, 0.3, 0.3], 1, 0.0, True),
        ([0.1, 0.3, 0.2, 0.25], 2, 0.0, True),
        ([0.1, 0.3, 0.2, 0.35], 2, 0.0, False),
        ([0.1, 0.3, 0.2, 0.35], 2, 0.1, True),
        ([0.1], 1, 0.0, False),
    ],
)
def test_stop_rule(history, patience, delta, fires):
    s = spec(stopRule={"patience": patience, "minDelta": delta})
    rounds = [RoundStatus(round=i, pass1=p) for i, p in enumerate(history)]
    assert stop_rule_fires(s, rounds) is fires


def test_stop_rule_ends_the_run_after_score():
    s = spec(rounds=5, stopRule={"patience": 1})
    status = at(1, Stage.score, rounds=[RoundStatus(round=0, pass1=0.5)])
    d = plan(s, status, ok(**SCORE), NOW)  # 0.3 <= 0.5
    assert d.status.phase is Phase.succeeded and d.status.reason == "StopRule"


def test_suspend_cancels_the_running_stage_and_resume_relaunches_the_same_attempt():
    running = at(1, Stage.train, attempt=1)
    d = plan(spec(suspend=True), running, Observation(State.running), NOW)
    assert d.actions == (Cancel(StageRef(1, Stage.train, 1)),) and d.status.phase is Phase.suspended
    assert {c.type: c.status for c in d.status.conditions}["Suspended"] == "True"
    d2 = plan(spec(suspend=False), d.status, ABSENT, LATER)
    assert d2.actions == (Launch(StageRef(1, Stage.train, 1), 1),) and d2.status.phase is Phase.running


def test_a_suspended_run_with_nothing_running_cancels_nothing():
    d = plan(spec(suspend=True), at(0, Stage.think), ABSENT, NOW)
    assert d.actions == () and d.status.phase is Phase.suspended


def test_lowering_rounds_below_the_current_stage_finishes_the_run():
    d = plan(spec(rounds=1), at(1, Stage.select), ABSENT, NOW)
    assert d.status.phase is Phase.succeeded and d.actions == ()


def test_raising_rounds_continues_a_completed_run():
    done = plan(spec(), at(2, Stage.score), ok(**SCORE), NOW).status
    d = plan(spec(rounds=3), done, ABSENT, LATER)
    assert d.actions == (Launch(StageRef(2, Stage.select, 0), 1),) and d.status.phase is Phase.running


def test_a_failed_run_stays_failed():
    failed = plan(spec(maxAttempts=1), at(0, Stage.think), Observation(State.failed), NOW).status
    assert plan(spec(maxAttempts=5), failed, ABSENT, LATER).actions == ()


def test_conditions_keep_their_transition_time_while_unchanged():
    d1 = plan(spec(), at(0, Stage.think), ok(), NOW)
    d2 = plan(spec(), d1.status, Observation(State.running), LATER)
    progressing = {c.type: c for c in d2.status.conditions}["Progressing"]
    assert progressing.status == "True" and progressing.last_transition_time == NOW


def test_the_planner_does_not_mutate_its_input():
    status = at(0, Stage.score)
    before = status.model_dump()
    plan(spec(), status, ok(**SCORE), NOW)
    assert status.model_dump() == before
