"""End to end on the code task: `tpt run` of a tiny model that writes Python programs, each one run against its
problem's tests in the real sandbox (runsc where the machine has it, as CI does), pruned to the correct ones,
trained on with TRL, evaluated again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tpt_stages import layout, manifest
from tpt_stages.sandbox import available_backends
from tpt_stages.storage import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def code_run(model, storage: str) -> dict:
    return {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": "code"},
        "spec": {
            "model": {"uri": str(model), "dtype": "float32"},
            "task": {
                "kind": "code",
                "generator": {"trainProblems": 200, "testProblems": 40, "seed": 11},
                "referenceTimeMultiple": 5,
                "testTimeoutSeconds": 2,
                "memoryMb": 256,
            },
            "rounds": 1,
            # transformers' generate: for 480 samples of this model faster than vLLM, which starts in ~15 s
            "think": {"samplesPerProblem": 2, "maxTokens": 96, "engine": "transformers"},
            "evaluation": {"samples": 2},
            "select": {"examplesPerRound": 100},
            "train": {"learningRate": 2e-4, "batchSize": 16, "maxLength": 192},
            "storage": {"uri": storage},
        },
    }


def test_tpt_run_on_a_code_task_verifies_programs_in_the_sandbox(weak_tiny_code_model, tmp_path):
    spec = tmp_path / "code.yaml"
    spec.write_text(yaml.safe_dump(code_run(weak_tiny_code_model, f"file://{tmp_path}/runs")))
    proc = subprocess.run(
        [sys.executable, "-m", "tpt_stages.cli", "run", str(spec)], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    store = open_store(f"file://{tmp_path}/runs/code")
    status = json.loads(store.read_text(layout.STATUS))
    assert status["phase"] == "Succeeded", status

    verify = manifest.read(store, layout.stage_dir(0, layout.Stage.verify, 0)).report
    assert verify["sandbox"] == available_backends()[0]  # the strongest this machine has
    assert verify["samples"] == 200 * 2 + 40 * 2
    verdicts = verify["verdicts"]
    assert verdicts.get("correct", 0) > 0 and sum(n for v, n in verdicts.items() if v != "correct") > 0, verdicts
    assert "infra_error" not in verdicts, verdicts
    # Every generated problem ships a reference solution, timed in the sandbox before the samples.
    assert verify["reference_limits"] == {"timed": 240, "failed": 0}

    score = manifest.read(store, layout.stage_dir(0, layout.Stage.score)).report
    funnel = score["funnel"]
    assert 0 < funnel["selected"] == min(100, funnel["unique"]) <= funnel["correct"], funnel
    train = manifest.read(store, layout.stage_dir(0, layout.Stage.train)).report
    assert train["examples"] == funnel["selected"]
    # Training data is the model's own verified programs, in the conversation think rendered.
    selected = [json.loads(line) for line in store.read_text(layout.select_file(0)).splitlines()]
    assert all("```python" in ex["completion"][0]["content"] for ex in selected)

    assert [r["round"] for r in status["rounds"]] == [0, 1]
    # (Pass@1 itself may be 0 on 40 test problems × 2 samples of a ~5% model: the funnel above is the signal.)
    assert all(0 <= r["pass1"] <= r["passk"] <= 1 for r in status["rounds"]), status["rounds"]
    assert status["rounds"][1]["modelUri"].endswith("round-01/model")
