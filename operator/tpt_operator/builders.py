"""Job manifests for the planner's `Launch` actions: pure functions of (run, action, operator config).

Every child object is fully determined by its inputs, so creating it again after an operator restart is a no-op
(its name is deterministic and AlreadyExists counts as success) and golden files can pin it down in tests.

Shapes (DESIGN §4, §5):
- prepare, score, select: a small CPU Job;
- think: a GPU Indexed Job, one completion per shard;
- verify: a CPU Indexed Job; for code tasks each pod is the sandbox: gVisor runtime class, no service-account
  token, Pod Security `restricted`, label `tpt.dev/sandbox=true` (the NetworkPolicy's selector), and the
  model-written programs run in a `grade` container that holds no credentials: an init container fetches the
  inputs and a native sidecar uploads the verdicts;
- train: a GPU Job running `accelerate launch`; several nodes make it an Indexed Job plus a headless Service
  that gives rank 0 a stable DNS name for torch's rendezvous;
- and, not for a Launch: the Job that deletes a run's storage when the run is deleted with
  `storage.deleteOnRunDeletion` (`cleanup_job`), a small CPU Job running `tpt delete`.

Credentials only ever arrive through `envFrom: secretRef`; the operator never reads the Secret.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from tpt_operator import GROUP, VERSION
from tpt_operator.config import OperatorConfig
from tpt_stages.layout import Stage
from tpt_stages.planner import Launch, StageRef
from tpt_stages.sandbox import program_root
from tpt_stages.spec import KIND, SelfImprovementRun, StageResources, TaskKind, dumps

MAX_NAME = 63
LABEL_RUN = "tpt.dev/run"
LABEL_ROUND = "tpt.dev/round"
LABEL_STAGE = "tpt.dev/stage"
LABEL_ATTEMPT = "tpt.dev/attempt"
LABEL_SANDBOX = "tpt.dev/sandbox"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
GPU = "nvidia.com/gpu"
RDZV_PORT = 29500
# Small CPU stages have no resources in the spec: modest requests and a deadline so a hung one cannot stall a
# run forever.
SMALL_STAGE = StageResources(cpu="1", memory="4Gi", active_deadline_seconds=6 * 3600)
# One pod-level retry absorbs a lost node; exit status 2 (a problem the user must fix) fails the Job at once.
# The planner retries whole stages (`maxAttempts`) on top of this.
BACKOFF_LIMIT = 1
CACHE_DIR = "/var/cache/tpt"
CLEANUP = "delete-storage"  # the cleanup Job's name suffix and its tpt.dev/stage label
WORKDIR = "/work"
# Program slots (harnesses at once) in a verify pod whose spec names no CPU count.
SANDBOX_SLOTS = 4


def job_name(run_name: str, ref: StageRef) -> str:
    """`<run>-<slug>`, cut to 63 characters with a hash suffix when a (pre-CRD) run name is too long."""
    name = f"{run_name}-{ref.slug}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(ref.slug) - len(digest) - 2
    return f"{run_name[:keep].rstrip('-')}-{digest}-{ref.slug}"


def child_labels(run_name: str, stage: str) -> dict[str, str]:
    """What every child Job and pod of a run carries (the operator's watches select on LABEL_RUN)."""
    return {
        LABEL_RUN: run_name,
        LABEL_STAGE: stage,
        "app.kubernetes.io/name": "tpt-stage",
        "app.kubernetes.io/managed-by": "tpt-operator",
    }


def stage_labels(run_name: str, ref: StageRef) -> dict[str, str]:
    ours = {
        LABEL_RUN: run_name,
        LABEL_ROUND: str(ref.round),
        LABEL_STAGE: ref.stage.value,
        LABEL_ATTEMPT: str(ref.attempt),
    }
    return {**ours, **child_labels(run_name, ref.stage.value)}


def cleanup_job_name(run_name: str) -> str:
    return f"{run_name}-{CLEANUP}"  # run names have at most 40 characters (the CRD's rule)


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def parse_run(body: Mapping[str, Any]) -> SelfImprovementRun:
    from tpt_stages.spec import parse

    doc = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
    return parse(doc)


def build(body: Mapping[str, Any], action: Launch, config: OperatorConfig) -> list[dict[str, Any]]:
    """The objects to create for one Launch, in creation order (a Service before the Job that needs it)."""
    run = parse_run(body)
    ref = action.ref
    builder = {
        Stage.prepare: _small,
        Stage.score: _small,
        Stage.select: _small,
        Stage.think: _think,
        Stage.verify: _verify,
        Stage.train: _train,
    }[ref.stage]
    return builder(_Ctx(body, run, config, action))


def cleanup_job(body: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The Job that deletes the run's directory in the object store (`tpt delete`), with the stages' image and
    credentials. Owned by the run like every child, so it goes with the run once the finalizer is removed."""
    ctx = _Ctx(body, parse_run(body), config)
    args = ["-m", "tpt_stages.cli", "delete", ctx.run.run_uri(), "--yes"]
    container = ctx.container("delete", ctx.cpu_image, ["python"], args, resources=_resources(SMALL_STAGE, 0))
    pod = {"containers": [container], "securityContext": _pod_security()}
    return ctx.job(pod, SMALL_STAGE, indexed=False, completions=1)


class _Ctx:
    """What every builder needs, derived once: for a stage's Launch, or (no action) the cleanup Job."""

    def __init__(
        self, body: Mapping[str, Any], run: SelfImprovementRun, config: OperatorConfig, action: Launch | None = None
    ):
        self.body, self.run, self.action, self.config = body, run, action, config
        self.namespace = body["metadata"].get("namespace") or "default"
        self.spec = run.spec
        if action is None:
            self.name = cleanup_job_name(run.name)
            self.labels = child_labels(run.name, CLEANUP)
        else:
            self.ref = action.ref
            self.name = job_name(run.name, action.ref)
            self.labels = stage_labels(run.name, action.ref)

    @property
    def secret_name(self) -> str | None:
        return self.spec.storage.secret_name or self.config.default_secret_name

    @property
    def queue_name(self) -> str | None:
        return self.spec.resources.queue_name or self.config.default_queue_name

    @property
    def image(self) -> str:
        return self.spec.resources.image or self.config.stage_image

    @property
    def cpu_image(self) -> str:
        return self.spec.resources.image or self.config.cpu_stage_image

    def stage_args(self, *extra: str) -> list[str]:
        args = ["-m", "tpt_stages", self.ref.stage.value, "--round", str(self.ref.round)]
        if self.action.shards > 1 or self.ref.stage in (Stage.think, Stage.verify):
            args += ["--num-shards", str(self.action.shards)]
        return [*args, *extra]

    def env(self) -> list[dict[str, Any]]:
        env = [
            {"name": "TPT_SPEC", "value": dumps(self.run)},
            {"name": "TPT_RUN", "value": self.run.name},
            {"name": "TPT_CACHE_DIR", "value": CACHE_DIR},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ]
        endpoint = self.spec.storage.endpoint or self.config.s3_endpoint
        if endpoint:
            env.append({"name": "AWS_ENDPOINT_URL_S3", "value": endpoint})
        return env

    def env_from(self) -> list[dict[str, Any]]:
        return [{"secretRef": {"name": self.secret_name}}] if self.secret_name else []

    def container(self, name: str, image: str, command: list[str], args: list[str], **extra: Any) -> dict:
        c: dict[str, Any] = {
            "name": name,
            "image": image,
            "imagePullPolicy": self.config.image_pull_policy,
            "command": command,
            "args": args,
            "env": self.env(),
        }
        if self.env_from():
            c["envFrom"] = self.env_from()
        # The stage writes its report to /dev/termination-log; a crash leaves the log's tail there instead.
        c["terminationMessagePolicy"] = "FallbackToLogsOnError"
        c["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        c.update(copy.deepcopy(extra))
        return c

    def job(self, pod_spec: dict[str, Any], res: StageResources, *, indexed: bool, completions: int) -> dict:
        labels = dict(self.labels)
        job_labels = dict(labels)
        if self.queue_name:
            job_labels[LABEL_QUEUE] = self.queue_name
        pod_spec = {"restartPolicy": "Never", "enableServiceLinks": False, **pod_spec}
        if self.spec.resources.priority_class_name:
            pod_spec["priorityClassName"] = self.spec.resources.priority_class_name
        spec: dict[str, Any] = {
            "backoffLimit": BACKOFF_LIMIT,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "completions": completions,
            "parallelism": completions,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        }
        if indexed:
            spec["completionMode"] = "Indexed"
        if res.active_deadline_seconds:
            spec["activeDeadlineSeconds"] = res.active_deadline_seconds
        if self.config.job_ttl_seconds_after_finished is not None:
            spec["ttlSecondsAfterFinished"] = self.config.job_ttl_seconds_after_finished
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": job_labels,
                "annotations": {"tpt.dev/shards": str(self.action.shards if self.action else 1)},
                "ownerReferences": [owner_reference(self.body)],
            },
            "spec": spec,
        }


def _resources(res: StageResources, gpus: int) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        requests["cpu"] = res.cpu
    if res.memory:
        requests["memory"] = limits["memory"] = res.memory
    if gpus:
        # Extended resources are requested through limits; quantities are strings in the API.
        limits[GPU] = str(gpus)
    return _present(requests=requests, limits=limits)


def _placement(ctx: _Ctx, res: StageResources, gpu: bool) -> dict[str, Any]:
    """nodeSelector and tolerations: the spec's, plus the operator's GPU-pool defaults for GPU pods."""
    selector = {**(ctx.config.gpu_node_selector if gpu else {}), **res.node_selector}
    tolerations = [t.model_dump(exclude_none=True) for t in res.tolerations]
    if gpu:
        tolerations += [t.model_dump(exclude_none=True) for t in ctx.config.gpu_tolerations if t not in res.tolerations]
    return _present(nodeSelector=selector, tolerations=tolerations)


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: manifests leave out empty ones, as `kubectl get -o yaml` shows them."""
    return {k: v for k, v in fields.items() if v}


def _cache_volumes(gpu: bool) -> tuple[list[dict], list[dict]]:
    volumes = [{"name": "cache", "emptyDir": {}}]
    mounts = [{"name": "cache", "mountPath": CACHE_DIR}]
    if gpu:
        # vLLM and NCCL need more shared memory than a container's 64 MB default.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def _pod_security() -> dict[str, Any]:
    return {"seccompProfile": {"type": "RuntimeDefault"}}


def _small(ctx: _Ctx) -> list[dict]:
    volumes, mounts = _cache_volumes(False)
    container = ctx.container(
        "stage", ctx.cpu_image, ["python"], ctx.stage_args(), resources=_resources(SMALL_STAGE, 0), volumeMounts=mounts
    )
    pod = {"containers": [container], "volumes": volumes, "securityContext": _pod_security()}
    return [ctx.job(pod, SMALL_STAGE, indexed=False, completions=1)]


def _think(ctx: _Ctx) -> list[dict]:
    res = ctx.spec.resources.think
    gpu = res.gpus > 0
    volumes, mounts = _cache_volumes(gpu)
    container = ctx.container(
        "stage", ctx.image, ["python"], ctx.stage_args(), resources=_resources(res, res.gpus), volumeMounts=mounts
    )
    pod = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": _pod_security(),
        **_placement(ctx, res, gpu),
    }
    return [ctx.job(pod, res, indexed=True, completions=ctx.action.shards)]


def _verify(ctx: _Ctx) -> list[dict]:
    res = ctx.spec.resources.verify
    if ctx.spec.task.kind is not TaskKind.code:
        volumes, mounts = _cache_volumes(False)
        container = ctx.container(
            "stage", ctx.cpu_image, ["python"], ctx.stage_args(), resources=_resources(res, 0), volumeMounts=mounts
        )
        pod = {
            "containers": [container],
            "volumes": volumes,
            "securityContext": _pod_security(),
            **_placement(ctx, res, False),
        }
        return [ctx.job(pod, res, indexed=True, completions=ctx.action.shards)]
    return [_sandbox_job(ctx, res)]


def _restricted() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _sandbox_job(ctx: _Ctx, res: StageResources) -> dict:
    """Code verification: the pod is the sandbox, and the container that runs model-written programs holds no
    credentials (no envFrom, no service-account token) and can write only its emptyDir."""
    mounts = [{"name": "work", "mountPath": WORKDIR}, {"name": "tmp", "mountPath": "/tmp"}]
    phase = lambda p: ctx.stage_args("--phase", p, "--workdir", WORKDIR)  # noqa: E731
    fetch = ctx.container("fetch", ctx.cpu_image, ["python"], phase("fetch"), volumeMounts=mounts)
    upload = ctx.container("upload", ctx.cpu_image, ["python"], phase("upload"), volumeMounts=mounts)
    upload["restartPolicy"] = "Always"  # a native sidecar: runs beside `grade`, stopped when it ends
    grade = ctx.container(
        "grade", ctx.config.sandbox_image, ["python"], phase("grade"), volumeMounts=mounts, resources=_resources(res, 0)
    )
    grade.pop("envFrom", None)
    # Each harness of the grade phase chroots its programs into the image's program root and runs them in a slot
    # of its own there, an emptyDir (program_root.py): one per CPU, as the grade phase runs one harness per CPU.
    slots = [f"slot-{i}" for i in range(_whole_cpus(res.cpu))]
    grade["volumeMounts"] += [
        {"name": s, "mountPath": f"{program_root.PROGRAM_ROOT}{program_root.WORK}/{i}"} for i, s in enumerate(slots)
    ]
    # The pod is the outer sandbox (gVisor runtime class); inside it the harness, unprivileged, keeps programs in
    # namespaces of their own (docs/sandbox.md, "In the cluster") and adds per-program rlimits.
    grade["env"] = [e for e in grade["env"] if e["name"] != "AWS_ENDPOINT_URL_S3"]
    grade["env"].append({"name": "TPT_SANDBOX_BACKEND", "value": "userns"})
    for c in (fetch, upload, grade):
        c["securityContext"] = _restricted()
        # The root filesystem is read-only: caches and HOME live in the /tmp emptyDir.
        c["env"] = [e for e in c["env"] if e["name"] != "TPT_CACHE_DIR"]
        c["env"] += [{"name": "TPT_CACHE_DIR", "value": "/tmp/tpt-cache"}, {"name": "HOME", "value": "/tmp"}]
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "fsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [fetch, upload],
        "containers": [grade],
        "volumes": [{"name": v, "emptyDir": {}} for v in ("work", "tmp", *slots)],
        **_placement(ctx, res, False),
    }
    if ctx.config.sandbox_runtime_class_name:
        pod["runtimeClassName"] = ctx.config.sandbox_runtime_class_name
    job = ctx.job(pod, res, indexed=True, completions=ctx.action.shards)
    job["spec"]["template"]["metadata"]["labels"][LABEL_SANDBOX] = "true"
    return job


def _whole_cpus(quantity: str | None) -> int:
    """A CPU quantity ("2", "1.5", "500m") rounded up to whole CPUs; SANDBOX_SLOTS without one."""
    if quantity is None:
        return SANDBOX_SLOTS
    try:
        cpus = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    except ValueError:
        raise ValueError(f"resources.verify.cpu: {quantity!r} is not a CPU quantity (such as 4 or 500m)") from None
    return max(1, math.ceil(cpus))


def service_name(job: str) -> str:
    return job


def _train(ctx: _Ctx) -> list[dict]:
    res = ctx.spec.resources.train
    gpu = res.gpus > 0
    nodes = res.nodes
    volumes, mounts = _cache_volumes(gpu)
    launch = ["launch"]
    if gpu:
        launch += ["--num_processes", str(res.gpus * nodes), "--num_machines", str(nodes)]
        if res.gpus * nodes > 1:
            launch.append("--multi_gpu")
    else:
        launch += ["--cpu", "--num_processes", "1", "--num_machines", "1"]
    env_extra: list[dict] = []
    if nodes > 1:
        svc = service_name(ctx.name)
        launch += [
            "--machine_rank", "$(MACHINE_RANK)",
            "--main_process_ip", f"{ctx.name}-0.{svc}",
            "--main_process_port", str(RDZV_PORT),
        ]  # fmt: skip
        env_extra.append(
            {
                "name": "MACHINE_RANK",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
                },
            }
        )
    container = ctx.container(
        "stage", ctx.image, ["accelerate"], [*launch, *ctx.stage_args()], resources=_resources(res, res.gpus),
        volumeMounts=mounts,
    )  # fmt: skip
    container["env"] = container["env"] + env_extra
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": _pod_security(),
        **_placement(ctx, res, gpu),
    }
    if nodes == 1:
        return [ctx.job(pod, res, indexed=False, completions=1)]
    pod["subdomain"] = service_name(ctx.name)
    container["ports"] = [{"name": "rdzv", "containerPort": RDZV_PORT}]
    job = ctx.job(pod, res, indexed=True, completions=nodes)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(ctx.name),
            "namespace": ctx.namespace,
            "labels": dict(ctx.labels),
            "ownerReferences": [owner_reference(ctx.body)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": dict(ctx.labels),
            "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT}],
        },
    }
    return [service, job]
