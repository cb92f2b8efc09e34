"""Content-addressed reuse of committed stages (`tpt_stages.reuse`), with the real stages (prepare, think with
transformers' generate on an untrained tiny model, verify) over local disk and a real S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tpt_stages import __main__ as stages_main
from tpt_stages import layout, manifest, reuse, tinymodel
from tpt_stages.layout import Stage
from tpt_stages.spec import loads_all
from tpt_stages.stage import Context
from tpt_stages.storage import open_store


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    tinymodel.build_tiny_model(out, pretraining=tinymodel.Pretraining(target_pass1=None, max_steps=0), log=print)
    return out


def write_doc(tmp_path, name: str, model, storage: str, **spec) -> str:
    doc = {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": str(model), "dtype": "float32"},
            "task": {"kind": "arith", "generator": {"trainProblems": 20, "testProblems": 6, "seed": 5}},
            "rounds": 1,
            "think": _think(),
            "evaluation": {"samples": 2},
            "storage": {"uri": storage},
            **spec,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_stages(spec: str, *stages: Stage) -> None:
    for stage in stages:
        assert stages_main.main([stage.value, "--round", "0", "--spec", spec]) == 0


def committed(store, stage: Stage) -> manifest.Manifest:
    done = manifest.read(store, layout.stage_dir(0, stage, 0 if stage in layout.SHARDED else None))
    assert done is not None
    return done


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path):
    if request.param == "file":
        return f"file://{tmp_path}/runs"
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/runs"


def test_a_second_run_with_the_same_round0_inputs_copies_think_and_verify(untrained_model, tmp_path, storage):
    a = write_doc(tmp_path, "pruned", untrained_model, storage)
    b = write_doc(tmp_path, "unpruned", untrained_model, storage, select={"strategy": "none"})
    other_seed = write_doc(tmp_path, "seed1", untrained_model, storage, think={**_think(), "seed": 1})
    run_stages(a, Stage.prepare, Stage.think, Stage.verify)
    run_stages(b, Stage.prepare, Stage.think, Stage.verify, Stage.score)
    run_stages(other_seed, Stage.prepare, Stage.think)
    store_a, store_b = open_store(f"{storage}/pruned"), open_store(f"{storage}/unpruned")

    for stage in (Stage.think, Stage.verify):
        first, second = committed(store_a, stage), committed(store_b, stage)
        assert first.reused_from is None and first.fingerprint
        assert second.fingerprint == first.fingerprint
        assert second.reused_from == f"{store_a.uri}/{layout.stage_dir(0, stage, 0)}"
        assert [(f.path, f.sha256, f.rows) for f in second.files] == [(f.path, f.sha256, f.rows) for f in first.files]
        assert second.report == {**first.report, "reused_from": second.reused_from}
    # The copy is a complete committed stage: the next stage of run b computed from it.
    assert committed(store_b, Stage.score).report["funnel"]["generated"] == 20 * 2

    # Another seed names other samples: computed, not copied.
    seeded = committed(open_store(f"{storage}/seed1"), Stage.think)
    assert seeded.reused_from is None and seeded.fingerprint != committed(store_a, Stage.think).fingerprint


def test_a_source_that_no_longer_matches_its_manifest_is_not_copied(untrained_model, tmp_path):
    storage = f"file://{tmp_path}/runs"
    a = write_doc(tmp_path, "first", untrained_model, storage)
    b = write_doc(tmp_path, "second", untrained_model, storage)
    run_stages(a, Stage.prepare, Stage.think)
    store_a = open_store(f"{storage}/first")
    think_dir = layout.stage_dir(0, Stage.think, 0)
    store_a.write_text(f"{think_dir}/test.jsonl", "tampered\n")

    run_stages(b, Stage.prepare, Stage.think)
    second = committed(open_store(f"{storage}/second"), Stage.think)
    assert second.reused_from is None
    # The index now points at the run that computed it last.
    pointer = json.loads(open_store(storage).read_text(f"{reuse.INDEX}/think/{second.fingerprint}.json"))
    assert pointer == {"run": f"{open_store(storage).uri}/second", "dir": think_dir}


def test_a_model_not_pinned_by_content_gives_no_fingerprint(tmp_path):
    storage = f"file://{tmp_path}/runs"
    spec = write_doc(tmp_path, "hub", "google/gemma-2-2b-it", storage)
    run_stages(spec, Stage.prepare)
    run = loads_all(Path(spec).read_text())[0]
    ctx = Context(run, open_store(f"{storage}/hub"), 0, 0, 1)
    assert reuse.fingerprint(ctx, Stage.think) is None
    pinned = run.model_copy(
        update={"spec": run.spec.model_copy(update={"model": run.spec.model.model_copy(update={"revision": "abc"})})}
    )
    assert reuse.fingerprint(Context(pinned, ctx.store, 0, 0, 1), Stage.think) is not None
    # Stages that depend on the run's own choices are never shared.
    assert reuse.fingerprint(ctx, Stage.select) is None


def _think() -> dict:
    return {"samplesPerProblem": 2, "maxTokens": 12, "engine": "transformers"}
