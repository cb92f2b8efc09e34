"""Job builders: golden manifests (regenerate with TPT_UPDATE_GOLDEN=1), names, and the properties that matter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tpt_operator.builders import MAX_NAME, build, cleanup_job, job_name
from tpt_operator.config import OperatorConfig, load
from tpt_stages.layout import Stage
from tpt_stages.planner import Launch, StageRef

GOLDEN = Path(__file__).resolve().parents[1] / "operator" / "golden"
CONFIG = OperatorConfig(
    stageImage="registry.example/tpt-stage:1.0", cpuImage="registry.example/tpt-cpu:1.0",
    sandboxImage="registry.example/tpt-sandbox:1.0", s3Endpoint="http://minio.tpt:9000",
    defaultSecretName="tpt-s3", gpuNodeSelector={"pool": "gpu"}, defaultQueueName="team-a",
)  # fmt: skip


def body(name: str = "gsm8k", kind: str = "math", **spec) -> dict:
    task = (
        {"kind": "arith"} if kind == "arith"
        else {"kind": kind, "train": {"uri": "hf://x/train"}, "test": {"uri": "hf://x/test"}}
    )  # fmt: skip
    return {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name, "namespace": "team-a", "uid": "0b6ad1b5-5c43-4b43-9a55-4b6f6f0d3f6e"},
        "spec": {
            "model": {"uri": "google/gemma-2-2b-it"},
            "task": task,
            "rounds": 2,
            "storage": {"uri": "s3://tpt-runs"},
            **spec,
        },
    }


CASES = {
    "think": (body(think={"shards": 4}, resources={"think": {"gpus": 1, "memory": "40Gi"}, "priorityClassName": "batch"}),
              Launch(StageRef(0, Stage.think, 0), 4)),
    "verify-math": (body(think={"shards": 2}), Launch(StageRef(1, Stage.verify, 1), 2)),
    "verify-code": (body(kind="code", think={"shards": 2}), Launch(StageRef(0, Stage.verify, 0), 2)),
    "score": (body(), Launch(StageRef(2, Stage.score, 0), 1)),
    "train": (body(resources={"train": {"gpus": 8}}), Launch(StageRef(0, Stage.train, 0), 1)),
    "train-multinode": (body(resources={"train": {"gpus": 8, "nodes": 2}, "queueName": "gpu-queue"}),
                        Launch(StageRef(1, Stage.train, 0), 1)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_manifests(case):
    objs = build(*CASES[case], CONFIG)
    text = yaml.safe_dump_all(objs, sort_keys=False, width=120)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("TPT_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with TPT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case} differs from {path} (TPT_UPDATE_GOLDEN=1 to accept)"


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _all_containers(job: dict) -> list[dict]:
    pod = _pod(job)
    return [*(pod.get("initContainers") or []), *pod["containers"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_job_has_owner_labels_limits_and_no_inlined_credentials(case):
    job = build(*CASES[case], CONFIG)[-1]
    meta = job["metadata"]
    assert meta["ownerReferences"][0]["controller"] is True and meta["ownerReferences"][0]["uid"]
    assert {"tpt.dev/run", "tpt.dev/round", "tpt.dev/stage", "tpt.dev/attempt"} <= set(meta["labels"])
    assert len(meta["name"]) <= MAX_NAME and meta["labels"]["kueue.x-k8s.io/queue-name"]
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert _pod(job)["restartPolicy"] == "Never"
    for c in _all_containers(job):
        names = {e["name"] for e in c["env"]}
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        spec_doc = next(e["value"] for e in c["env"] if e["name"] == "TPT_SPEC")
        assert yaml.safe_load(spec_doc)["metadata"]["namespace"] == "team-a"


def test_think_is_an_indexed_gpu_job_over_shards_on_the_gpu_pool():
    job = build(*CASES["think"], CONFIG)[0]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    pod = _pod(job)
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["priorityClassName"] == "batch"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "tpt-s3"}}]
    assert pod["containers"][0]["image"] == "registry.example/tpt-stage:1.0"


def test_code_verify_pods_are_sandboxes_whose_grader_holds_no_credentials():
    job = build(*CASES["verify-code"], CONFIG)[0]
    pod = _pod(job)
    assert job["spec"]["template"]["metadata"]["labels"]["tpt.dev/sandbox"] == "true"
    assert pod["runtimeClassName"] == "gvisor" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    grade = pod["containers"][0]
    assert grade["image"] == "registry.example/tpt-sandbox:1.0" and "envFrom" not in grade
    assert not any(e["name"].startswith("AWS_") for e in grade["env"])
    assert grade["securityContext"]["readOnlyRootFilesystem"] is True
    assert grade["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    fetch, upload = pod["initContainers"]
    assert "restartPolicy" not in fetch and upload["restartPolicy"] == "Always"
    assert fetch["envFrom"] == upload["envFrom"] == [{"secretRef": {"name": "tpt-s3"}}]
    assert [c["args"][c["args"].index("--phase") + 1] for c in (fetch, upload, grade)] == ["fetch", "upload", "grade"]


@pytest.mark.parametrize(("cpu", "slots"), [(None, 4), ("3", 3), ("1.5", 2), ("500m", 1)])
def test_code_verify_grader_has_a_program_slot_per_cpu_in_the_program_root(cpu, slots):
    """One emptyDir per harness (one harness per CPU) at the image's program root, where programs are chroot'ed."""
    spec = body(kind="code", resources={"verify": {"cpu": cpu}} if cpu else {})
    pod = _pod(build(spec, Launch(StageRef(0, Stage.verify, 0), 1), CONFIG)[0])
    (grade,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in grade["volumeMounts"]}
    want = {f"slot-{i}": f"/opt/tpt-program-root/work/{i}" for i in range(slots)}
    assert {n: p for n, p in mounts.items() if n.startswith("slot-")} == want
    assert all(f"slot-{i}" in {v["name"] for v in pod["volumes"] if "emptyDir" in v} for i in range(slots))
    assert all(not m["name"].startswith("slot-") for c in pod["initContainers"] for m in c["volumeMounts"])


def test_code_verify_with_a_cpu_count_that_is_not_one_says_so():
    with pytest.raises(ValueError, match=r"resources\.verify\.cpu: '4 cores' is not a CPU quantity"):
        build(
            body(kind="code", resources={"verify": {"cpu": "4 cores"}}), Launch(StageRef(0, Stage.verify, 0), 1), CONFIG
        )


def test_math_verify_is_a_plain_cpu_indexed_job():
    job = build(*CASES["verify-math"], CONFIG)[0]
    pod = _pod(job)
    assert "runtimeClassName" not in pod and "nvidia.com/gpu" not in str(pod)
    assert job["metadata"]["name"] == "gsm8k-r01-verify-a1"


def test_multinode_train_is_an_indexed_job_behind_a_headless_service():
    service, job = build(*CASES["train-multinode"], CONFIG)
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert _pod(job)["subdomain"] == service["metadata"]["name"]
    args = _pod(job)["containers"][0]["args"]
    assert args[:7] == ["launch", "--num_processes", "16", "--num_machines", "2", "--multi_gpu", "--machine_rank"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"


def test_single_node_train_runs_accelerate_launch_without_a_service():
    objs = build(*CASES["train"], CONFIG)
    assert len(objs) == 1
    c = _pod(objs[0])["containers"][0]
    assert c["command"] == ["accelerate"] and c["args"][-4:] == ["tpt_stages", "train", "--round", "0"]


def test_job_names_are_deterministic_and_fit_in_63_characters():
    ref = StageRef(12, Stage.prepare, 19)
    assert job_name("a" * 40, ref) == "a" * 40 + "-r12-prepare-a19"
    long = job_name("b" * 60, ref)
    assert len(long) <= MAX_NAME and long.endswith("-r12-prepare-a19") and long == job_name("b" * 60, ref)
    assert job_name("b" * 60, ref) != job_name("b" * 59 + "c", ref)


def test_config_from_file_and_environment(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "stageImage: a/b:1\nwatchNamespaces: [x]\ngpuNodeSelector: {pool: gpu}\njobTTLSecondsAfterFinished: 60\n"
    )
    config = load(
        str(path), {"TPT_STAGE_IMAGE": "c/d:2", "TPT_SANDBOX_RUNTIME_CLASS_NAME": "", "TPT_METRICS_PORT": "0"}
    )
    assert (
        config.stage_image == "c/d:2"
        and config.watch_namespaces == ["x"]
        and config.gpu_node_selector == {"pool": "gpu"}
    )
    assert (
        config.job_ttl_seconds_after_finished == 60
        and config.sandbox_runtime_class_name is None
        and config.metrics_port == 0
        and config.cpu_stage_image == "c/d:2"
    )
    with pytest.raises(ValueError):
        load(str(path), {"TPT_IMAGE_PULL_POLICY": "Sometimes"})


def test_the_storage_cleanup_job_deletes_the_runs_directory_with_the_stages_credentials():
    run = body(storage={"uri": "s3://tpt-runs/team", "deleteOnRunDeletion": True})
    job = cleanup_job(run, CONFIG)
    meta = job["metadata"]
    assert meta["name"] == "gsm8k-delete-storage" and meta["namespace"] == "team-a"
    assert meta["labels"]["tpt.dev/run"] == "gsm8k" and meta["labels"]["tpt.dev/stage"] == "delete-storage"
    assert meta["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    (c,) = _pod(job)["containers"]
    assert c["command"] == ["python"]
    assert c["args"] == ["-m", "tpt_stages.cli", "delete", "s3://tpt-runs/team/team-a/gsm8k", "--yes"]
    assert c["envFrom"] == [{"secretRef": {"name": "tpt-s3"}}]
    assert {"name": "AWS_ENDPOINT_URL_S3", "value": "http://minio.tpt:9000"} in c["env"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]} and c["resources"]["limits"]
