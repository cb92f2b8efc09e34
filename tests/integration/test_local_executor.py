"""`tpt run`'s executor with real processes: how many shards run at once, and on which GPU. Each shard
process is a small probe instead of a stage: what is under test is the scheduling, not the stage."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tpt_stages.layout import Stage
from tpt_stages.planner import Launch, StageRef, State
from tpt_stages.runner import LocalExecutor

# Holds its GPU's lock (a clash if another shard holds it) and counts the shards running beside it.
PROBE = textwrap.dedent(
    """
    import fcntl, json, os, pathlib, sys, time
    shared, shard = pathlib.Path(sys.argv[1]), sys.argv[2]
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    lock = open(shared / f"gpu-{device}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        clash = 0
    except BlockingIOError:
        clash = 1
    (shared / f"running-{shard}").touch()
    time.sleep(1.0)
    beside = len(list(shared.glob("running-*")))
    (shared / f"running-{shard}").unlink()
    report = {"devices": {device: 1}, "clashes": clash, "most_at_once": {str(beside): 1}}
    pathlib.Path(os.environ["TPT_REPORT_FILE"]).write_text(json.dumps(report))
    """
)


class ProbeExecutor(LocalExecutor):
    def __init__(self, log_dir: Path, shared: Path):
        super().__init__(run=None, store=None, log_dir=log_dir)  # the probe needs neither
        self.shared = shared

    def command(self, action: Launch, shard: int) -> list[str]:
        return [sys.executable, "-c", PROBE, str(self.shared), str(shard)]


def execute(tmp_path: Path, stage: Stage, shards: int) -> dict:
    shared = tmp_path / "shared"
    shared.mkdir()
    executor = ProbeExecutor(tmp_path / "logs", shared)
    obs = executor.execute(Launch(StageRef(0, stage, 0), shards), lambda progress: None)
    assert obs.state is State.succeeded, obs.message
    return obs.report


def test_think_shards_run_side_by_side_one_per_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    report = execute(tmp_path, Stage.think, shards=4)
    assert report["devices"] == {"3": 2, "5": 2} and report["clashes"] == 0
    assert max(int(n) for n in report["most_at_once"]) == 2


def test_a_single_shard_sees_every_gpu(tmp_path, monkeypatch):
    """Train is one process over all GPUs (accelerate): it must not be pinned to one."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    report = execute(tmp_path, Stage.train, shards=1)
    assert report["devices"] == {"3,5": 1}


@pytest.mark.parametrize("stage", [Stage.think, Stage.verify])
def test_without_gpus_shards_run_one_at_a_time(tmp_path, monkeypatch, stage):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = execute(tmp_path, stage, shards=2)
    assert report["most_at_once"] == {"1": 2} and report["clashes"] == 0
