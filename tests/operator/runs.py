"""Run documents for the emulated cluster, and waiting on what the operator does with them."""

from __future__ import annotations

import time
from collections.abc import Callable


def run_doc(name: str, rounds: int = 2, **spec) -> dict:
    """A small arith run; the stages are faked in operator-logic tests, so sizes only matter in e2e."""
    body = {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "model": {"uri": "s3://models/tiny", "dtype": "float32"},
            "task": {"kind": "arith", "grader": "normalized", "generator": {"trainProblems": 20, "testProblems": 10}},
            "rounds": rounds,
            "storage": {"uri": "s3://tpt-runs/runs", "secretName": "tpt-s3"},
            "resources": {"think": {"gpus": 0}, "train": {"gpus": 0}},
        },
    }
    body["spec"].update(spec)
    return body


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
