"""The run's status: the same model is the CR's `.status` and `tpt run`'s `status.json`.

It is small and bounded (one entry per round), because it lives in etcd. It is also the operator's only memory:
the operator reads no object storage, so what a finished stage reported (its metrics, its artifact URIs) is kept
here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tpt_stages.layout import Stage
from tpt_stages.spec import Phase


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_Model):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    last_transition_time: str


class GraderMetrics(_Model):
    pass1: float
    passk: float
    correctk: float


class Funnel(_Model):
    """How many train samples survived each step of pruning."""

    problems: int = 0
    generated: int = 0
    answered: int = 0
    correct: int = 0
    unique: int = 0
    selected: int = 0


class RoundStatus(_Model):
    round: int
    model_uri: str | None = None
    k: int | None = None
    test_problems: int | None = None
    pass1: float | None = None
    passk: float | None = None
    correctk: float | None = None
    graders: dict[str, GraderMetrics] = Field(default_factory=dict)
    grader_disagreements: int | None = None
    funnel: Funnel | None = None
    infra_errors: int | None = None
    seconds: dict[str, float] = Field(default_factory=dict)


class RunStatus(_Model):
    phase: Phase = Phase.pending
    round: int = 0
    stage: Stage = Stage.prepare
    attempt: int = 0
    reason: str = ""
    message: str = ""
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    rounds: list[RoundStatus] = Field(default_factory=list)
    artifacts: dict[str, str] = Field(default_factory=dict)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    gpu_seconds: dict[str, float] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None

    def round_status(self, r: int) -> RoundStatus | None:
        return next((x for x in self.rounds if x.round == r), None)

    @property
    def best_pass1(self) -> float | None:
        values = [x.pass1 for x in self.rounds if x.pass1 is not None]
        return max(values) if values else None

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
