"""The SelfImprovementRun document: the paper's defaults, and clear errors that name the field and value."""

import pytest
import yaml

from tpt_stages.runner import immutable_changes
from tpt_stages.spec import PruneStrategy, SpecError, dumps, loads_all, parse


def doc(**spec) -> dict:
    base = {
        "model": {"uri": "google/gemma-2-2b-it"},
        "task": {"kind": "math", "train": {"uri": "train.jsonl"}, "test": {"uri": "test.jsonl"}},
    }
    base.update(spec)
    return {"apiVersion": "tpt.dev/v1alpha1", "kind": "SelfImprovementRun", "metadata": {"name": "demo"}, "spec": base}


def test_defaults_are_the_papers():
    s = parse(doc()).spec
    assert (s.think.samples_per_problem, s.think.temperature) == (10, 0.8)
    assert (s.evaluation.samples, s.evaluation.temperature, s.evaluation.max_problems) == (20, 0.7, 500)
    assert s.examples_per_round == 2000 and s.select.strategy is PruneStrategy.ground_truth
    assert (s.train.epochs, s.train.warmup_ratio, s.train.learning_rate) == (1.0, 0.1, 1e-6)
    assert s.rounds == 4 and s.task.primary_grader == "strict"
    code = parse(doc(task={"kind": "code", "train": {"uri": "a"}, "test": {"uri": "b"}})).spec
    assert code.examples_per_round == 1000 and code.task.primary_grader == "tests"


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"rounds": -1}, "spec.rounds", "-1"),
        ({"think": {"temperature": 5}}, "spec.think.temperature", "5"),
        ({"think": {"samplesPerProblem": 0}}, "spec.think.samplesPerProblem", "0"),
        ({"think": {"tempurature": 0.8}}, "spec.think.tempurature", "unknown field"),
        ({"select": {"strategy": "random"}}, "spec.select.strategy", "random"),
        ({"select": {"strategy": "softPositive"}}, "spec", "softPositive"),
        ({"train": {"learningRate": 0}}, "spec.train.learningRate", "0"),
        ({"train": {"warmupRatio": 1.0}}, "spec.train.warmupRatio", "1.0"),
        ({"storage": {"uri": "gs://bucket/x"}}, "spec.storage.uri", "gs://"),
        ({"storage": {"uri": "s3://ab"}}, "spec.storage.uri", "3 characters"),
        ({"task": {"kind": "math", "train": {"uri": "a"}}}, "spec.task", "task.test"),
        ({"task": {"kind": "arith", "train": {"uri": "a"}}}, "spec.task", "not used"),
        ({"task": {"kind": "poetry"}}, "spec.task.kind", "poetry"),
        ({"task": {"kind": "arith", "promptTemplate": "no placeholder"}}, "spec.task", "{question}"),
        ({"task": {"kind": "arith", "generator": {"minSteps": 3, "maxSteps": 2}}}, "spec.task.generator", "minSteps"),
        (
            {"task": {"kind": "math", "generator": {}, "train": {"uri": "a"}, "test": {"uri": "b"}}},
            "spec.task",
            "generator",
        ),
        ({"task": {"kind": "code", "generator": {}, "train": {"uri": "a"}}}, "spec.task", "not used"),
        ({"task": {"kind": "code"}}, "spec.task", "task.generator"),
        ({"task": {"kind": "arith", "referenceTimeMultiple": 3}}, "spec.task", "code tasks"),
        (
            {"task": {"kind": "code", "generator": {}, "referenceTimeMultiple": 0}},
            "spec.task.referenceTimeMultiple",
            "0",
        ),
        ({"model": {}}, "spec.model.uri", "required"),
        ({"evaluation": {"samples": "many"}}, "spec.evaluation.samples", "many"),
    ],
)
def test_bad_values_are_rejected_naming_the_field_and_value(change, field, needle):
    with pytest.raises(SpecError) as e:
        parse(doc(**change))
    msg = str(e.value)
    assert f"{field}:" in msg and needle in msg, msg


@pytest.mark.parametrize("name", ["Demo", "a" * 41, "-x", "has_underscore"])
def test_run_names_must_fit_child_job_names(name):
    d = doc()
    d["metadata"]["name"] = name
    with pytest.raises(SpecError, match=r"metadata\.name"):
        parse(d)


def test_wrong_kind_or_version_and_non_mappings():
    with pytest.raises(SpecError, match="apiVersion"):
        parse({**doc(), "apiVersion": "tpt.dev/v2"})
    with pytest.raises(SpecError, match="mapping"):
        parse(["a"])
    with pytest.raises(SpecError, match="YAML"):
        loads_all("a: [")


def test_documents_round_trip_and_keep_camel_case():
    run = parse(doc(think={"samplesPerProblem": 4}))
    text = dumps(run)
    assert "samplesPerProblem: 4" in text and "samples_per_problem" not in text
    assert loads_all(text)[0] == run


def test_a_cluster_document_with_status_and_extra_metadata_is_accepted():
    d = doc()
    d["metadata"].update(namespace="team-a", uid="123", labels={"x": "y"})
    d["status"] = {"phase": "Running"}
    run = parse(d)
    assert run.run_uri() == "file://./tpt-runs/team-a/demo"


def test_immutable_fields():
    a = parse(doc())
    b = parse(doc(rounds=6, train={"learningRate": 1e-5}))
    assert immutable_changes(a, b) == []
    c = parse(doc(model={"uri": "other"}, think={"shards": 2}))
    assert immutable_changes(a, c) == ["model", "think.shards"]


def test_examples_are_valid_runs():
    from pathlib import Path

    files = sorted(Path(__file__).parents[2].glob("examples/*.yaml"))
    assert files
    for f in files:
        for d in yaml.safe_load_all(f.read_text()):
            parse(d)


def test_every_spec_field_is_documented():
    from pathlib import Path

    from pydantic import BaseModel

    from tpt_stages.spec import RunSpec

    text = (Path(__file__).parents[2] / "docs" / "spec.md").read_text()

    def fields(model, prefix=""):
        for name, f in model.model_fields.items():
            path = prefix + (f.alias or name)
            yield path
            sub = [
                a
                for a in (*getattr(f.annotation, "__args__", ()), f.annotation)
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            if sub and not path.startswith("resources.") and path not in ("task.generator", "task.train", "task.test"):
                yield from fields(sub[0], path + ".")

    missing = [p for p in fields(RunSpec) if p not in text]
    assert not missing, f"fields missing from docs/spec.md: {missing}"
