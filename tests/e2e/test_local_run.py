"""End to end on a tiny model, on the CPU, with the real engines (vLLM or transformers for sampling, TRL for
training).

1. Every stage by hand, `python -m tpt_stages ...`, through one full round over local disk, sampling with vLLM.
2. `tpt run` over a real S3 server, killed in the middle of a round and run again: it finishes, and no stage
   that had committed ran twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tpt_stages import layout, manifest
from tpt_stages.storage import open_store

# The shared tiny model (built once per machine) and real vLLM/TRL stages take minutes on 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def run_doc(name: str, model: Path, storage: str, rounds: int, engine: str = "vllm") -> dict:
    return {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": str(model), "dtype": "float32"},
            "task": {
                "kind": "arith",
                "grader": "normalized",
                "generator": {"trainProblems": 300, "testProblems": 60, "seed": 7},
            },
            "rounds": rounds,
            "think": {"samplesPerProblem": 2, "maxTokens": 96, "engine": engine},
            "evaluation": {"samples": 2},
            "select": {"examplesPerRound": 100},
            "train": {"learningRate": 2e-4, "batchSize": 16, "maxLength": 192},
            "storage": {"uri": storage},
        },
    }


def stage(cmd: list[str], spec: Path, report: Path) -> dict:
    env = {**os.environ, "TPT_REPORT_FILE": str(report)}
    proc = subprocess.run(
        [sys.executable, "-m", "tpt_stages", *cmd, "--spec", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(report.read_text())


def test_every_stage_by_hand_through_one_round_on_local_disk(weak_tiny_model, tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(run_doc("by-hand", weak_tiny_model, f"file://{tmp_path}/runs", rounds=1)))
    report = tmp_path / "report.json"
    stage(["prepare", "--round", "0"], spec, report)
    think = stage(["think", "--round", "0"], spec, report)
    assert think["samples"] == 60 * 2 + 300 * 2 and think["tokens"] > 0 and think["engine"] == "vllm"
    verify = stage(["verify", "--round", "0"], spec, report)
    assert verify["samples"] == 720 and sum(verify["verdicts"].values()) == 720
    score = stage(["score", "--round", "0"], spec, report)
    funnel = score["funnel"]
    assert funnel["generated"] == 600 and 0 < funnel["correct"] <= funnel["answered"] <= 600
    assert funnel["selected"] == min(100, funnel["unique"])
    assert 0 < score["graders"]["normalized"]["pass1"] <= score["graders"]["normalized"]["passk"] <= 1
    select = stage(["select", "--round", "0"], spec, report)
    assert select["selected"] == funnel["selected"]
    train = stage(["train", "--round", "0"], spec, report)
    assert train["examples"] == select["selected"] and train["model_uri"].endswith("round-01/model")

    store = open_store(f"file://{tmp_path}/runs/by-hand")
    model = manifest.read(store, layout.model_dir(1))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.path for f in model.files}
    # The next round's think loads the trained model.
    again = stage(["think", "--round", "1"], spec, report)
    assert again["model_uri"].endswith("round-01/model") and again["samples"] == 60 * 2
    # A committed stage does not run again: it reports what it recorded.
    cached = stage(["score", "--round", "0"], spec, report)
    assert cached["cached"] is True and cached["funnel"] == funnel


def committed(store) -> dict[str, str]:
    """Every committed manifest and its finish time."""
    return {
        key: json.loads(store.read_text(key))["finished_at"] for key in store.list() if key.endswith(layout.MANIFEST)
    }


def test_tpt_run_over_s3_resumes_after_a_kill_without_redoing_committed_work(weak_tiny_model, tmp_path, s3_bucket):
    spec = tmp_path / "run.yaml"
    # transformers' generate: the by-hand test covers vLLM, and this one is about resuming, not sampling (vLLM
    # starts in ~15 s per think stage on 2 cores, transformers in ~7). One round: rounds that follow each other
    # are the by-hand test's and the operator's two-round test's subject.
    doc = run_doc("resume", weak_tiny_model, f"s3://{s3_bucket}/runs", rounds=1, engine="transformers")
    spec.write_text(yaml.safe_dump(doc))
    store = open_store(f"s3://{s3_bucket}/runs/resume")
    cmd = [sys.executable, "-m", "tpt_stages.cli", "run", str(spec)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    # Kill it (the whole process group, as a crash would) once round 0's samples are committed.
    deadline = time.monotonic() + 400
    while not store.exists(layout.manifest(0, layout.Stage.think, 0)):
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "round 0's think did not finish in time"
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = committed(store)
    assert layout.manifest(0, layout.Stage.think, 0) in before and layout.manifest(0, layout.Stage.train) not in before

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = committed(store)
    assert {k: after[k] for k in before} == before, "a committed stage ran again"
    status = json.loads(store.read_text(layout.STATUS))
    assert status["phase"] == "Succeeded" and status["reason"] == "Completed"
    assert [r["round"] for r in status["rounds"]] == [0, 1]
    assert all(0 <= r["pass1"] <= 1 for r in status["rounds"])
    assert status["rounds"][1]["modelUri"].endswith("round-01/model")
    assert store.exists(layout.REPORT_MD) and store.read_bytes(layout.REPORT_PNG)[:4] == b"\x89PNG"


def test_a_bad_spec_gives_one_clear_error_naming_the_field(tmp_path):
    bad = run_doc("bad", tmp_path, f"file://{tmp_path}", rounds=1)
    bad["spec"]["think"]["temperature"] = -1
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "tpt_stages.cli", "run", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "spec.think.temperature" in proc.stderr and "-1" in proc.stderr
    assert "Traceback" not in proc.stderr
