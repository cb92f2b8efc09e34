"""End to end: the operator under kopf, the emulated API, and a kubelet that runs the real stage programs
(`python -m tpt_stages ...`, `accelerate launch ...`) as processes against a real S3 server, on the tiny model.

The stage pods get their S3 credentials only from the Secret named in the spec (the kubelet resolves
`envFrom`), the endpoint from the operator's config, and report through the termination-message channel.
"""

from __future__ import annotations

import os
import time

import pytest
import s3server
from conftest import kubelet_running, operator_running
from runs import wait_for

from tpt_stages import layout
from tpt_stages.storage import open_store

# Building the tiny model (shared, cached) and two real rounds take minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_a_two_round_run_on_the_tiny_model_succeeds_with_per_round_metrics(
    weak_tiny_model, s3_bucket, cluster, tmp_path, monkeypatch
):
    models = open_store(f"s3://{s3_bucket}/models/tiny", endpoint=s3server.ENDPOINT)
    models.upload_dir(weak_tiny_model, "")
    monkeypatch.setenv("TPT_S3_ENDPOINT", s3server.ENDPOINT)  # operator config: AWS_ENDPOINT_URL_S3 for pods
    doc = {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": "tiny", "namespace": "default"},
        "spec": {
            "model": {"uri": f"s3://{s3_bucket}/models/tiny", "dtype": "float32"},
            "task": {
                "kind": "arith",
                "grader": "normalized",
                "generator": {"trainProblems": 200, "testProblems": 40, "seed": 7},
            },
            "rounds": 2,
            # transformers' generate: vLLM (~15 s start per think stage) is covered by tests/e2e
            "think": {"samplesPerProblem": 2, "maxTokens": 96, "engine": "transformers"},
            "evaluation": {"samples": 2},
            "select": {"examplesPerRound": 100},
            "train": {"learningRate": 2e-4, "batchSize": 16, "maxLength": 192},
            "storage": {"uri": f"s3://{s3_bucket}/runs", "secretName": "tpt-s3"},
            "resources": {"think": {"gpus": 0}, "train": {"gpus": 0}},
            "maxAttempts": 1,
        },
    }
    passthrough = {k: v for k, v in os.environ.items() if k.startswith(("VLLM_", "HF_", "OMP_", "TRANSFORMERS_"))}
    extra_env = {"HF_HUB_OFFLINE": "1", **passthrough}
    started = time.monotonic()
    (tmp_path / "kubelet").mkdir()
    with kubelet_running(cluster, tmp_path / "kubelet", extra_env=extra_env) as kubelet, operator_running():
        cluster.secret("tpt-s3", {k: v for k, v in s3server.KEYS.items() if k.startswith("AWS_")})
        cluster.create(cluster.runs_url(), doc)
        done = lambda: (cluster.run("tiny") or {}).get("status", {}).get("phase") in ("Succeeded", "Failed")  # noqa: E731
        wait_for(done, 900, "the run to finish", interval=1)
    status = cluster.run("tiny")["status"]
    assert status["phase"] == "Succeeded", (status.get("message"), kubelet.errors)
    assert [r["round"] for r in status["rounds"]] == [0, 1, 2]
    assert all(0 <= r["pass1"] <= 1 and r["k"] == 2 for r in status["rounds"])
    assert status["rounds"][1]["modelUri"] == f"s3://{s3_bucket}/runs/default/tiny/round-01/model"
    assert status["rounds"][0]["funnel"]["selected"] > 0 and status["stageSeconds"]["think"] > 0
    store = open_store(f"s3://{s3_bucket}/runs/default/tiny", endpoint=s3server.ENDPOINT)
    assert store.exists(layout.manifest(1, layout.Stage.train)) and store.exists(layout.score_file(2))
    assert all(n == 1 for n in cluster.job_creations().values())
    print(f"e2e: {time.monotonic() - started:.0f}s, pass@1 by round: {[r['pass1'] for r in status['rounds']]}")
