"""The operator's own configuration: images, object-store endpoint, scheduling defaults, ports.

Read once at start-up from a camelCase YAML file (`$TPT_OPERATOR_CONFIG`, the Helm chart mounts its ConfigMap
at /etc/tpt-operator/config.yaml) and then from `TPT_*` environment variables, which win. Keys are the Helm
chart's values, one for one, so a value means the same thing in the chart, the file and the environment:
`stageImage` <- `TPT_STAGE_IMAGE`, `watchNamespaces` <- `TPT_WATCH_NAMESPACES` (comma-separated), lists and
maps of nodeSelector/tolerations <- JSON.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from tpt_stages.spec import Toleration

DEFAULT_PATH = "/etc/tpt-operator/config.yaml"


class OperatorConfig(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    stage_image: str = Field(default="ghcr.io/tpt-operator/stage:0.1.0", description="GPU/CPU stage image")
    cpu_image: str | None = Field(default=None, description="image for CPU-only stages; default: stageImage")
    sandbox_image: str = Field(default="ghcr.io/tpt-operator/sandbox:0.1.0", description="code-verify grader")
    image_pull_policy: str = Field(default="IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")
    s3_endpoint: str | None = Field(default=None, description="AWS_ENDPOINT_URL_S3 for stage pods")
    default_secret_name: str | None = Field(default=None, description="Secret with AWS_* when the spec has none")
    gpu_node_selector: dict[str, str] = Field(default_factory=dict, description="for GPU pods")
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
    )
    default_queue_name: str | None = Field(default=None, description="Kueue LocalQueue when the spec has none")
    sandbox_runtime_class_name: str | None = Field(default="gvisor", description="runtimeClassName of code verify")
    job_ttl_seconds_after_finished: int | None = Field(default=86400, ge=0, alias="jobTTLSecondsAfterFinished")
    watch_namespaces: list[str] = Field(default_factory=list, description="empty: the whole cluster")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 disables")
    health_port: int = Field(default=8080, ge=0, le=65535, description="0 disables")
    resync_seconds: float = Field(default=60.0, gt=0, description="periodic re-reconcile of every run")

    @field_validator("sandbox_runtime_class_name", "default_queue_name", "default_secret_name", "s3_endpoint")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    @property
    def cpu_stage_image(self) -> str:
        return self.cpu_image or self.stage_image


def _env_name(field: str) -> str:
    return "TPT_" + re.sub(r"(?<!^)(?=[A-Z])", "_", to_camel(field)).upper()


def env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`TPT_STAGE_IMAGE=x` -> {"stage_image": "x"}; lists/maps are JSON, watchNamespaces is comma-separated."""
    out: dict[str, Any] = {}
    for name, info in OperatorConfig.model_fields.items():
        raw = environ.get(_env_name(name))
        if raw is None:
            continue
        if name == "watch_namespaces":
            out[name] = [ns.strip() for ns in raw.split(",") if ns.strip()]
        elif info.annotation in (dict[str, str], list[Toleration]):
            out[name] = json.loads(raw) if raw.strip() else info.default_factory()
        else:
            out[name] = raw
    return out


def load(path: str | None = None, environ: dict[str, str] | None = None) -> OperatorConfig:
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("TPT_OPERATOR_CONFIG") or DEFAULT_PATH
    data: dict[str, Any] = {}
    if Path(path).exists():
        data = yaml.safe_load(Path(path).read_text()) or {}
    merged = OperatorConfig.model_validate(data).model_dump()  # snake_case names: env overrides use them too
    merged.update(env_overrides(environ))
    return OperatorConfig.model_validate(merged)
