"""`tpt run`'s pure decisions."""

from tpt_stages.layout import Stage
from tpt_stages.runner import shards_at_once


def test_gpu_stages_run_one_shard_per_gpu():
    assert shards_at_once(Stage.think, gpus=4) == 4
    assert shards_at_once(Stage.train, gpus=8) == 8


def test_on_the_cpu_shards_run_one_at_a_time():
    """One shard already keeps every core busy: two vLLM processes on 2 cores sample half as fast as one."""
    assert shards_at_once(Stage.think, gpus=0) == 1
    assert shards_at_once(Stage.verify, gpus=0) == 1


def test_verify_runs_one_shard_at_a_time_even_beside_gpus():
    """A verify shard spreads its programs over one sandbox harness per CPU by itself."""
    assert shards_at_once(Stage.verify, gpus=4) == 1
