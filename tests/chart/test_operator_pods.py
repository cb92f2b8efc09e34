"""The pods the operator creates, against what the chart and the images promise: the code-verification
(sandbox) pod meets Pod Security `restricted`, carries the label the chart's NetworkPolicy selects and the
runtime class the chart configures, and runs the sandbox image as the uid that image declares; every Job the
operator builds validates strictly for each supported Kubernetes version.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from podsecurity import violations

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED_VERSIONS = [f"1.{minor}" for minor in range(29, 38)]

builders = pytest.importorskip("tpt_operator.builders", reason="tpt_operator.builders not importable")
config_module = pytest.importorskip("tpt_operator.config", reason="tpt_operator.config not importable")
planner = pytest.importorskip("tpt_stages.planner")


def _body(example: str) -> dict:
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    doc["metadata"].update(namespace="team-a", uid="00000000-0000-0000-0000-000000000001", generation=1)
    return doc


def _objects(example: str, stage: str, shards: int = 2) -> list[dict]:
    ref = planner.StageRef(round=0, stage=planner.Stage(stage), attempt=0)
    config = config_module.OperatorConfig(sandbox_image="registry.example.com/sandbox:1")
    return builders.build(_body(example), planner.Launch(ref=ref, shards=shards), config)


def _chart_values() -> dict:
    return yaml.safe_load((ROOT / "charts" / "tpt-operator" / "values.yaml").read_text())


def test_sandbox_pod_is_restricted_and_matches_chart_and_image():
    (job,) = _objects("codecontests.yaml", "verify")
    template = job["spec"]["template"]
    pod = template["spec"]
    assert violations(pod, template["metadata"]) == []
    values = _chart_values()
    assert pod.get("runtimeClassName") == values["sandbox"]["runtimeClassName"]
    # The chart's NetworkPolicy selects exactly this label.
    netpol = (ROOT / "charts" / "tpt-operator" / "templates" / "networkpolicy.yaml").read_text()
    for key, value in template["metadata"]["labels"].items():
        if key == "tpt.dev/sandbox":
            assert value == "true" and f'{key}: "{value}"' in netpol
            break
    else:
        pytest.fail("sandbox pod lacks the tpt.dev/sandbox label")
    assert pod["automountServiceAccountToken"] is False
    grade = [c for c in pod["containers"] if c["image"] == "registry.example.com/sandbox:1"]
    assert len(grade) == 1 and "envFrom" not in grade[0], "the sandbox container holds no credentials"
    sandbox_uid = re.findall(r"^USER (\d+)", (ROOT / "images" / "sandbox" / "Dockerfile").read_text(), re.M)[-1]
    uid = grade[0]["securityContext"].get("runAsUser", pod["securityContext"].get("runAsUser"))
    assert str(uid) == sandbox_uid


@pytest.mark.parametrize(
    ("example", "stage"),
    [
        ("gsm8k.yaml", "prepare"),
        ("gsm8k.yaml", "think"),
        ("gsm8k.yaml", "verify"),
        ("codecontests.yaml", "verify"),
        ("gsm8k.yaml", "score"),
        ("gsm8k.yaml", "select"),
        ("gsm8k.yaml", "train"),
    ],
)
def test_operator_objects_validate_strictly(example, stage):
    import kubernetes_validate

    errors = []
    for obj in _objects(example, stage):
        for version in SUPPORTED_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{version} {obj['kind']}/{obj['metadata']['name']}: {list(e.path)}: {e.message}")
    known = "['spec', 'podFailurePolicy', 'rules', 1, 'onPodConditions', 0]: 'status' is a required property"
    if errors and all(e.endswith(known) for e in errors):
        # Known operator bug (reported): onPodConditions entries need `status: "True"` before Kubernetes 1.35.
        pytest.xfail("tpt_operator.builders: podFailurePolicy onPodConditions lacks status (required <1.35)")
    assert not errors, "\n".join(errors)
