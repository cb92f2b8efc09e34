"""The CRD and SelfImprovementRun objects judged by a real Kubernetes API server (tests/kubeapi.py), and by
`tpt run`'s own validation (the pydantic spec) on the same documents: the two must agree, field by field.

What kube-apiserver would say about our CRD and objects is what apiextensions-apiserver says: it is the CRD half
of kube-apiserver (structural schema checks, defaulting, pruning, strict field validation, CEL rules with
`oldSelf`, the status subresource, printer columns).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubeapi
import pytest
import yaml

from tpt_operator import GROUP, PLURAL, VERSION, crd
from tpt_stages.spec import SpecError, loads_all, parse
from tpt_stages.status import Condition, Funnel, GraderMetrics, RoundStatus, RunStatus

ROOT = Path(__file__).resolve().parents[2]


def runs(ns: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"


def good(name: str = "gsm8k") -> dict:
    return yaml.safe_load(
        f"""
apiVersion: tpt.dev/v1alpha1
kind: SelfImprovementRun
metadata: {{name: {name}}}
spec:
  model: {{uri: google/gemma-2-2b-it}}
  task:
    kind: math
    train: {{uri: hf://openai/gsm8k/main, split: train}}
    test: {{uri: hf://openai/gsm8k/main, split: test}}
  rounds: 4
  storage: {{uri: s3://tpt-runs, secretName: tpt-s3}}
"""
    )


def test_without_the_server_the_tests_fail_saying_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(kubeapi, "BINARY", tmp_path / "apiextensions-apiserver")
    with pytest.raises(kubeapi.Missing, match=r"run `make apiserver`"):
        kubeapi.start(tmp_path)


def test_the_crd_from_crds_and_the_charts_copy_are_identical_accepted_and_established(kube_api, sir_crd):
    committed, chart = (p.read_bytes() for p in crd.OUTPUTS)
    assert chart == committed
    assert committed.decode() == crd.render(), "crds/ drifted from the models: run `python -m tpt_operator.crd`"
    # The fixture created it from crds/; the chart's copy goes through the server's update validation too.
    got = kube_api.apply_crd(yaml.safe_load(chart))
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True", conditions
    assert conditions.get("NonStructuralSchema") is None, conditions
    assert got["status"]["acceptedNames"]["shortNames"] == ["sir"]


def example_documents() -> list[tuple[str, str]]:
    """Each document of examples/*.yaml as the text a user applies (the server reads YAML as kubectl does)."""
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        parts = re.split(r"^---\s*$", path.read_text(), flags=re.M)
        docs += [(f"{path.name}#{i}", text) for i, text in enumerate(parts) if yaml.safe_load(text)]
    assert len(docs) >= 5
    return docs


EXAMPLES = example_documents()


@pytest.mark.parametrize(("label", "text"), EXAMPLES, ids=[label for label, _ in EXAMPLES])
def test_every_example_is_accepted_strictly_and_defaulted_as_pydantic_defaults_it(kube_api, sir_crd, label, text):
    ns = kube_api.namespace()
    headers = {"Content-Type": "application/yaml"}
    created = kube_api.request("POST", runs(ns), text, params={"fieldValidation": "Strict"}, headers=headers).json()
    assert kube_api.get(f"{runs(ns)}/{created['metadata']['name']}")["spec"] == created["spec"]
    (run,) = loads_all(text)
    assert created["spec"] == run.to_document()["spec"], label


def server_fields(response) -> set[str]:
    """The fields a 4xx response names: its causes, or the unknown fields of a strict decoding error."""
    body = response.json()
    fields = {c["field"] for c in (body.get("details") or {}).get("causes", []) if c.get("field")}
    return fields | set(re.findall(r'unknown field "([^"]+)"', body.get("message", "")))


def spec_fields(error: SpecError) -> set[str]:
    """The fields `tpt run`'s message names: each line's location, and for a rule across fields (located on
    the object that holds them) the fields its message mentions, such as `task.train`."""
    fields = set()
    for line in str(error).splitlines()[1:]:
        loc, _, message = line.partition(": ")
        loc = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", loc)
        fields.add(loc)
        for mention in re.findall(r"\b([a-z][a-zA-Z]*(?:\.[a-z][a-zA-Z]*)+)\b", message):
            head, _, rest = mention.partition(".")
            fields.add(f"{loc}.{rest}" if loc.split(".")[-1] == head else f"{loc}.{mention}")
    return fields


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
ARITH = {"kind": "arith"}
# (what to change, the value, the field both validators must name)
INVALID = [
    ("metadata.name", "x" * 41, "metadata.name"),
    ("metadata.name", "run.one", "metadata.name"),
    ("metadata.name", "Gsm8k", "metadata.name"),
    ("spec.rounds", -1, "spec.rounds"),
    ("spec.rounds", 101, "spec.rounds"),
    ("spec.rounds", "four", "spec.rounds"),
    ("spec.rounds", "4", "spec.rounds"),
    ("spec.rounds", 2.5, "spec.rounds"),
    ("spec.think.temperature", 2.5, "spec.think.temperature"),
    ("spec.think.samplesPerProblem", 0, "spec.think.samplesPerProblem"),
    ("spec.think.topP", 0, "spec.think.topP"),
    ("spec.think.maxTokens", 0, "spec.think.maxTokens"),
    ("spec.think.engine", "tgi", "spec.think.engine"),
    ("spec.think.shards", 0, "spec.think.shards"),
    ("spec.think", [], "spec.think"),
    ("spec.evaluation.samples", 1001, "spec.evaluation.samples"),
    ("spec.select.strategy", "random", "spec.select.strategy"),
    ("spec.select.strategy", "softPositive", "spec.select.strategy"),
    ("spec.select.examplesPerRound", 0, "spec.select.examplesPerRound"),
    ("spec.train.learningRate", 0, "spec.train.learningRate"),
    ("spec.train.warmupRatio", 1.0, "spec.train.warmupRatio"),
    ("spec.train.epochs", 0, "spec.train.epochs"),
    ("spec.train.gradientCheckpointing", "yes", "spec.train.gradientCheckpointing"),
    ("spec.stopRule", {}, "spec.stopRule.patience"),
    ("spec.model.dtype", "int4", "spec.model.dtype"),
    ("spec.model", _DELETE, "spec.model"),
    ("spec.model.uri", _DELETE, "spec.model.uri"),
    ("spec.model.uri", 123, "spec.model.uri"),
    ("spec.model.uri", None, "spec.model.uri"),
    ("spec.task.kind", None, "spec.task.kind"),
    ("spec.task.kind", "poetry", "spec.task.kind"),
    ("spec.task.test", _DELETE, "spec.task.train"),
    ("spec.task.train.uri", _DELETE, "spec.task.train.uri"),
    ("spec.task.train.limit", 0, "spec.task.train.limit"),
    ("spec.task.test.subset", "everything", "spec.task.test.subset"),
    ("spec.task.test.subset", "withoutImages", "spec.task.test.subset"),  # a code subset on a math task
    ("spec.task.grader", "tests", "spec.task.grader"),
    ("spec.task.generator", {"minSteps": 2}, "spec.task.generator"),
    ("spec.task.referenceTimeMultiple", 3, "spec.task.referenceTimeMultiple"),
    ("spec.task.promptTemplate", "Solve it.", "spec.task.promptTemplate"),
    ("spec.task.testTimeoutSeconds", 0, "spec.task.testTimeoutSeconds"),
    ("spec.task.memoryMb", 16, "spec.task.memoryMb"),
    ("spec.task", {"kind": "code"}, "spec.task.train"),
    ("spec.task", {**ARITH, "generator": {"minSteps": 3, "maxSteps": 2}}, "spec.task.generator.minSteps"),
    ("spec.task", {**ARITH, "generator": {"operators": "+/"}}, "spec.task.generator.operators"),
    ("spec.task", {**ARITH, "generator": {"maxSteps": 9}}, "spec.task.generator.maxSteps"),
    ("spec.storage.uri", "s3://ab", "spec.storage.uri"),
    ("spec.storage.uri", "gs://bucket", "spec.storage.uri"),
    ("spec.storage.endpoint", 5, "spec.storage.endpoint"),
    ("spec.resources.think.gpus", 65, "spec.resources.think.gpus"),
    ("spec.resources.train.tolerations", [{"effect": "Sometimes"}], "spec.resources.train.tolerations[0].effect"),
    ("spec.resources.verify.nodeSelector", {"disk": 1}, "spec.resources.verify.nodeSelector.disk"),
    ("spec.maxAttempts", 0, "spec.maxAttempts"),
    ("spec.thinkk", {}, "spec.thinkk"),
    ("spec.suspend", "maybe", "spec.suspend"),
]


@pytest.mark.parametrize(("path", "value", "field"), INVALID, ids=[f"{p}={v!r}"[:60] for p, v, _ in INVALID])
def test_an_invalid_spec_is_refused_by_the_server_and_by_tpt_run_naming_the_same_field(
    kube_api, sir_crd, path, value, field
):
    doc = _set(good(), path, value)
    r = kube_api.request("POST", runs(kube_api.namespace()), doc, params={"fieldValidation": "Strict"}, ok=False)
    assert r.status_code in (400, 422), f"the server accepted {path}={value!r}: {r.status_code}"
    assert field in server_fields(r), (server_fields(r), r.json().get("message"))
    with pytest.raises(SpecError) as e:
        parse(doc)
    assert field in spec_fields(e.value), (spec_fields(e.value), str(e.value))


# Spellings the server (sigs.k8s.io/yaml, as kubectl) reads as numbers of the right type; PyYAML alone would read
# `1e-6` as a string and strict types would refuse `4.0` for an integer.
SPELLINGS = ["rounds: 4.0", "train: {learningRate: 1e-6}", "train: {learningRate: 1}", "think: {temperature: 1}",
             "train: {warmupRatio: .5}", "think: {seed: -3}"]  # fmt: skip


@pytest.mark.parametrize("line", SPELLINGS)
def test_what_the_server_accepts_tpt_run_accepts_and_reads_the_same(kube_api, sir_crd, line):
    doc = good()
    doc["spec"].pop(line.split(":")[0], None)
    doc_text = yaml.safe_dump(doc) + f"  {line}\n"  # spec is the last key: the line goes into it
    created = kube_api.request(
        "POST", runs(kube_api.namespace()), doc_text, params={"fieldValidation": "Strict"},
        headers={"Content-Type": "application/yaml"},
    ).json()  # fmt: skip
    (run,) = loads_all(doc_text)
    assert created["spec"] == run.to_document()["spec"]


NULLS = ["spec.rounds", "spec.think", "spec.think.temperature", "spec.stopRule", "spec.model.revision", "spec.storage",
         "spec.task.grader", "spec.resources.think.nodeSelector", "spec.resources.think.tolerations", "spec.suspend",
         "spec.select.examplesPerRound"]  # fmt: skip


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@pytest.mark.parametrize("path", NULLS)
def test_a_null_means_not_given_to_the_server_and_to_tpt_run(kube_api, sir_crd, path):
    """The server keeps a null where the schema allows one and drops it (then defaults) where not."""
    doc = _set(good(), path, None)
    created = kube_api.create(runs(kube_api.namespace()), doc)
    assert _without_nulls(created["spec"]) == parse(doc).to_document()["spec"]


def test_a_code_task_takes_datasets_or_the_generator_not_both(kube_api, sir_crd):
    ns = kube_api.namespace()
    generated = _set(good(), "spec.task", {"kind": "code", "generator": {"seed": 3}, "referenceTimeMultiple": 3})
    kube_api.create(runs(ns), generated)
    parse(generated)
    both = _set(_set(generated, "spec.task.train", {"uri": "x.jsonl"}), "metadata.name", "both")
    r = kube_api.request("POST", runs(ns), both, ok=False)
    assert r.status_code == 422 and "spec.task.train" in server_fields(r), r.json()
    with pytest.raises(SpecError, match=r"task\.train"):
        parse(both)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [("spec.model.uri", "google/gemma-2-9b-it", "spec.model"), ("spec.task.train.limit", 100, "spec.task"),
     ("spec.storage.uri", "s3://elsewhere/x", "spec.storage"), ("spec.think.shards", 4, "spec.think.shards")],
)  # fmt: skip
def test_what_gives_a_runs_artifacts_their_meaning_is_immutable(kube_api, sir_crd, path, value, field):
    ns = kube_api.namespace()
    old = kube_api.create(runs(ns), good())
    r = kube_api.request("PUT", f"{runs(ns)}/gsm8k", _set(old, path, value), ok=False)
    assert r.status_code == 422 and field in server_fields(r), r.json()
    assert "immutable" in r.json()["message"]
    assert kube_api.get(f"{runs(ns)}/gsm8k")["spec"] == old["spec"]


def test_rounds_suspend_and_sampling_may_change(kube_api, sir_crd):
    ns = kube_api.namespace()
    old = kube_api.create(runs(ns), good())
    new = _set(_set(_set(old, "spec.rounds", 6), "spec.suspend", True), "spec.think.temperature", 1.0)
    got = kube_api.replace(f"{runs(ns)}/gsm8k", new)
    assert (got["spec"]["rounds"], got["spec"]["suspend"], got["spec"]["think"]["temperature"]) == (6, True, 1.0)
    assert got["metadata"]["generation"] == 2
    patched = kube_api.merge_patch(f"{runs(ns)}/gsm8k", {"spec": {"maxAttempts": 5, "resources": {"queueName": "q"}}})
    assert patched["spec"]["maxAttempts"] == 5 and patched["spec"]["resources"]["queueName"] == "q"


def full_status() -> RunStatus:
    """A status with every field of every status model set: what the structural schema would prune shows."""
    metrics = {"strict": GraderMetrics(pass1=0.3125, passk=0.5, correctk=0.25)}
    rounds = [
        RoundStatus(round=r, model_uri=f"s3://tpt-runs/ns/gsm8k/round-{r}/model", k=20, test_problems=500,
                    pass1=0.2 + r / 10, passk=0.55, correctk=0.4, graders=metrics | {"normalized": metrics["strict"]},
                    grader_disagreements=3, infra_errors=1,
                    funnel=Funnel(problems=100, generated=1000, answered=990, correct=400, unique=350, selected=200),
                    seconds={"think": 12.5, "verify": 1.25, "score": 0.5, "select": 0.25, "train": 30.0})
        for r in range(3)
    ]  # fmt: skip
    return RunStatus(
        phase="Running", round=2, stage="train", attempt=1, reason="StageRunning", message="train of round 2",
        observed_generation=1,
        conditions=[Condition(type="Ready", status="True", reason="StageRunning", message="ok",
                              last_transition_time="2026-11-28T19:00:00Z")],
        rounds=rounds, artifacts={"round-1/model": "s3://tpt-runs/ns/gsm8k/round-1/model"},
        stage_seconds={"think": 25.0, "train": 60.0}, gpu_seconds={"think": 25.0, "train": 120.0},
        started_at="2026-11-28T18:59:00Z", finished_at="2026-11-28T19:30:00Z",
    )  # fmt: skip


def documented_columns() -> tuple[list[str], list[str]]:
    """The headers of `kubectl get sir` and `kubectl get sir -o wide` in docs/operator.md."""
    text = (ROOT / "docs" / "operator.md").read_text()
    plain = re.search(r"^\$ kubectl get sir\n(.+)$", text, re.M)
    wide = re.search(r"^\$ kubectl get sir -o wide\n(.+)$", text, re.M)
    assert plain and wide, "docs/operator.md no longer shows `kubectl get sir`"
    return plain.group(1).split(), wide.group(1).split()


def test_a_runs_status_goes_through_the_status_subresource_unpruned_and_shows_in_the_printer_columns(kube_api, sir_crd):
    ns = kube_api.namespace()
    created = kube_api.create(runs(ns), good())
    status = full_status().to_document()  # what `tpt run` writes to status.json and the operator to .status
    # As the operator writes it (kube.write_status): a JSON patch conditional on the resourceVersion it read.
    headers = {"Content-Type": "application/json-patch+json"}
    rv = created["metadata"]["resourceVersion"]
    patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, {"op": "add", "path": "/status", "value": status}]  # fmt: skip
    kube_api.request("PATCH", f"{runs(ns)}/gsm8k/status", patch, headers=headers)
    stale = kube_api.request("PATCH", f"{runs(ns)}/gsm8k/status", patch, headers=headers, ok=False)
    assert stale.status_code == 422, stale.json()  # what kube.write_status reads as "the object moved on"
    read_back = kube_api.get(f"{runs(ns)}/gsm8k")["status"]
    assert read_back == status
    assert RunStatus.model_validate(read_back) == full_status()
    # The main resource ignores status: only the subresource writes it.
    kube_api.merge_patch(f"{runs(ns)}/gsm8k", {"status": {"phase": "Failed"}})
    assert kube_api.get(f"{runs(ns)}/gsm8k")["status"]["phase"] == "Running"

    table = kube_api.get(runs(ns), headers={"Accept": kubeapi.TABLE})
    columns = [c["name"] for c in table["columnDefinitions"]]
    shown = [c["name"].upper() for c in table["columnDefinitions"] if c["priority"] == 0]
    promised, promised_wide = documented_columns()
    assert shown == promised  # `kubectl get sir`
    assert [c.upper() for c in columns] == promised_wide  # `kubectl get sir -o wide`
    (row,) = table["rows"]
    cells = dict(zip(columns, row["cells"], strict=True))
    assert cells | {"Age": None} == {
        "Name": "gsm8k", "Phase": "Running", "Round": 2, "Stage": "train", "Pass@1": 0.4, "Age": None, "Rounds": 4,
        "Attempt": 1, "Task": "math", "Model": "google/gemma-2-2b-it", "Reason": "StageRunning",
    }  # fmt: skip
    assert re.fullmatch(r"\d+s", cells["Age"]), cells["Age"]
