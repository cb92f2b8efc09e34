"""The CRD is generated from the pydantic models (no drift) and carries their defaults, enums and bounds.

Whether Kubernetes accepts it, and what it says about documents, a real API server decides:
tests/integration/test_crd_on_apiserver.py.
"""

from __future__ import annotations

from tpt_operator import crd

SCHEMA = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_committed_crd_and_the_charts_copy_are_what_the_models_generate():
    for path in crd.OUTPUTS:
        assert path.read_text() == crd.render(), f"{path} drifted: run `python -m tpt_operator.crd`"


def test_the_schema_carries_the_models_defaults_enums_and_bounds():
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
