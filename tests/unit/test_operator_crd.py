"""The CRD: generated from the pydantic models (no drift), and it rejects bad documents naming the field.

Validation here is what the API server does, offline: the openAPIV3Schema through a JSON-Schema validator
(OpenAPI 3.0 is JSON Schema draft 4 plus `nullable`), then every CEL rule (`x-kubernetes-validations`) on the
node it is attached to, evaluated by cel-python, with `oldSelf` for updates.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from tpt_operator import crd
from tpt_stages.spec import parse

SCHEMA = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_committed_crd_and_the_charts_copy_are_what_the_models_generate():
    for path in crd.OUTPUTS:
        assert path.read_text() == crd.render(), f"{path} drifted: run `python -m tpt_operator.crd`"


def _walk_structural(node: dict, path: str) -> None:
    assert "type" in node or path.endswith(".metadata") is False, path
    if node.get("x-kubernetes-preserve-unknown-fields"):
        assert path.count(".") > 2, f"blanket preserve-unknown-fields at {path}"
    for key, sub in (node.get("properties") or {}).items():
        _walk_structural(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        _walk_structural(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        _walk_structural(node["additionalProperties"], f"{path}{{}}")


def test_the_schema_is_structural_with_defaults_enums_and_bounds():
    _walk_structural(SCHEMA, "")
    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["rounds"] == {**spec["rounds"], "type": "integer", "minimum": 0, "maximum": 100, "default": 4}
    assert spec["think"]["properties"]["temperature"]["default"] == 0.8
    assert spec["select"]["properties"]["strategy"]["enum"] == ["groundTruth", "softPositive", "none"]
    assert spec["resources"]["properties"]["think"]["default"]["gpus"] == 1
    assert spec["train"]["properties"]["learningRate"]["exclusiveMinimum"] is True
    versions = crd.crd()["spec"]["versions"][0]
    assert versions["subresources"] == {"status": {}}
    assert [c["name"] for c in versions["additionalPrinterColumns"] if "priority" not in c] == [
        "Phase", "Round", "Stage", "Pass@1", "Age",
    ]  # fmt: skip
    assert crd.crd()["spec"]["names"]["shortNames"] == ["sir"]


def _draft4(node: Any) -> Any:
    """OpenAPI 3.0 -> draft 4: `nullable` allows null; objects with properties reject unknown fields (as
    `kubectl apply --validate=strict` does)."""
    if isinstance(node, list):
        return [_draft4(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft4(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node and "additionalProperties" not in node and node is not SCHEMA["properties"]["metadata"]:
        out["additionalProperties"] = False
    return out


def _cel_errors(node: dict, value: Any, old: Any, path: str) -> list[str]:
    errors = []
    env = celpy.Environment()
    for rule in node.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"] and old is None:
            continue  # a transition rule: updates only
        activation = {"self": celpy.json_to_cel(value)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        if not env.program(env.compile(rule["rule"])).evaluate(activation):
            errors.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in (node.get("properties") or {}).items():
            if key in value:
                old_sub = old.get(key) if isinstance(old, dict) else None
                errors += _cel_errors(sub, value[key], old_sub, f"{path}.{key}" if path else key)
    return errors


def _defaulted(node: dict, value: Any) -> Any:
    """The API server fills defaults before CEL runs."""
    if isinstance(value, dict) and "properties" in node:
        value = dict(value)
        for key, sub in node["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _defaulted(sub, value[key])
    return value


def validate(doc: dict, old: dict | None = None) -> list[str]:
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in jsonschema.Draft4Validator(_draft4(SCHEMA)).iter_errors(doc)
    ]
    if errors:
        return errors
    return _cel_errors(SCHEMA, _defaulted(SCHEMA, doc), _defaulted(SCHEMA, old) if old else None, "")


def good() -> dict:
    return yaml.safe_load(
        """
apiVersion: tpt.dev/v1alpha1
kind: SelfImprovementRun
metadata: {name: gsm8k}
spec:
  model: {uri: google/gemma-2-2b-it}
  task:
    kind: math
    train: {uri: hf://openai/gsm8k/main, split: train}
    test: {uri: hf://openai/gsm8k/main, split: test}
  rounds: 4
  storage: {uri: s3://tpt-runs, secretName: tpt-s3}
"""
    )


def test_a_good_document_and_the_examples_pass_schema_and_cel():
    assert validate(good()) == []
    from pathlib import Path

    for path in sorted(Path(crd.ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert validate(doc) == [], path


def _set(doc: dict, path: str, value: Any) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last)
    else:
        node[last] = value
    return doc


_DELETE = object()
INVALID = [
    ("metadata.name", "x" * 41, "metadata.name"),
    ("spec.rounds", -1, "spec.rounds"),
    ("spec.rounds", 101, "spec.rounds"),
    ("spec.rounds", "four", "spec.rounds"),
    ("spec.think.temperature", 2.5, "spec.think.temperature"),
    ("spec.think.samplesPerProblem", 0, "spec.think.samplesPerProblem"),
    ("spec.think.engine", "tgi", "spec.think.engine"),
    ("spec.think.shards", 0, "spec.think.shards"),
    ("spec.select.strategy", "random", "spec.select.strategy"),
    ("spec.select.strategy", "softPositive", "spec.select.strategy"),
    ("spec.train.learningRate", 0, "spec.train.learningRate"),
    ("spec.train.warmupRatio", 1.0, "spec.train.warmupRatio"),
    ("spec.model.dtype", "int4", "spec.model.dtype"),
    ("spec.model", _DELETE, "model"),
    ("spec.task.kind", "poetry", "spec.task.kind"),
    ("spec.task.test", _DELETE, "task.train"),
    ("spec.task.grader", "tests", "task.grader"),
    ("spec.task.generator", {"minSteps": 2}, "task.generator"),
    ("spec.task.referenceTimeMultiple", 3, "task.referenceTimeMultiple"),
    ("spec.task.promptTemplate", "Solve it.", "task.promptTemplate"),
    ("spec.storage.uri", "s3://ab", "storage.uri"),
    ("spec.storage.uri", "gs://bucket", "storage.uri"),
    ("spec.resources.think.gpus", 65, "spec.resources.think.gpus"),
    ("spec.resources.train.tolerations", [{"effect": "Sometimes"}], "spec.resources.train.tolerations.0.effect"),
    ("spec.maxAttempts", 0, "spec.maxAttempts"),
    ("spec.thinkk", {}, "spec"),
    ("spec.suspend", "maybe", "spec.suspend"),
]


@pytest.mark.parametrize(("path", "value", "field"), INVALID, ids=[f"{p}={v!r}"[:50] for p, v, _ in INVALID])
def test_invalid_documents_are_rejected_naming_the_field(path, value, field):
    errors = validate(_set(good(), path, value))
    assert errors, f"{path}={value!r} was accepted"
    assert any(field in e or (field == "spec" and "thinkk" in e) for e in errors), errors
    # The pydantic model (what `tpt run` and the stages use) rejects it too, unless only the CRD knows the rule.
    doc = _set(good(), path, value)
    with pytest.raises(ValueError):
        parse(doc)


def test_arith_generator_steps_are_checked_by_cel_too():
    doc = _set(good(), "spec.task", {"kind": "arith", "generator": {"minSteps": 3, "maxSteps": 2}})
    assert any("minSteps" in e for e in validate(doc))


def test_code_tasks_take_datasets_or_the_generator_not_both():
    generated = _set(good(), "spec.task", {"kind": "code", "generator": {"seed": 3}, "referenceTimeMultiple": 3})
    assert validate(generated) == []
    parse(generated)
    both = _set(generated, "spec.task.train", {"uri": "x.jsonl"})
    assert any("task.train" in e for e in validate(both))
    neither = _set(good(), "spec.task", {"kind": "code"})
    assert any("task.train" in e for e in validate(neither))


@pytest.mark.parametrize(
    ("field", "path", "value"),
    [("model", "spec.model.uri", "google/gemma-2-9b-it"), ("task", "spec.task.train.limit", 100),
     ("storage", "spec.storage.uri", "s3://elsewhere/x")],
)  # fmt: skip
def test_model_task_and_storage_are_immutable(field, path, value):
    old = good()
    errors = validate(_set(old, path, value), old)
    assert any(f"spec.{field}" in e and "immutable" in e for e in errors), errors


def test_shards_are_immutable_but_rounds_and_suspend_may_change():
    old = good()
    assert validate(_set(_set(old, "spec.rounds", 6), "spec.suspend", True), old) == []
    errors = validate(_set(old, "spec.think", {"shards": 4}), old)
    assert any("think.shards" in e for e in errors), errors
