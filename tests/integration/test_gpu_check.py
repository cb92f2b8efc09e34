"""benchmarks/gpu_check.sh on a machine without a GPU: it must run what needs none, say what it skipped, and
leave valid JSON, so that the one run on a GPU machine (a scarce, timed lease) does not fail on a script that
rotted on the CPU side."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the check runs its full size (minutes)"),
]


def test_without_a_gpu_the_check_runs_the_cpu_sizes_skips_the_rest_and_exits_0(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    checks = {c["check"]: c for c in json.loads((tmp_path / "summary.json").read_text())["checks"]}
    assert {k: c["status"] for k, c in checks.items()} == {
        "pytest-gpu": "skipped",
        "train": "passed",
        "think": "passed",
        "quickstart-round": "skipped",
    }
    assert "no CUDA device" in checks["pytest-gpu"]["reason"]
    assert "needs a GPU" in checks["quickstart-round"]["reason"]
    for name in checks:  # one summary line per check on stdout
        assert f"gpu_check: {name} " in proc.stdout

    train = json.loads((tmp_path / "train.json").read_text())["data"]
    stage, bare = train["rows"]
    assert train["device"] == "cpu" and train["peak_source"] == "measured matrix product"
    assert stage["tokens"] == bare["tokens"] > 0  # the bare loop ran the stage's own batches
    think = json.loads((tmp_path / "think.json").read_text())["data"]
    assert [r["tokens"] > 0 for r in think["rows"]] == [True, True]
