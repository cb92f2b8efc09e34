"""vLLM on the CPU serves with every core the process may use: left alone it cuts torch to one thread (meant
for an engine core in a process of its own), which on 2 cores sampled 1.4x slower than with both."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tpt_stages import tinymodel

PROBE = """
import json
from tpt_stages.engines import open_engine, SamplingConfig
if __name__ == "__main__":
    engine = open_engine("vllm", {model!r}, dtype="float32", seed=0)
    out = engine.generate([[{{"role": "user", "content": "1 + 1?"}}]], SamplingConfig(2, 0.8, 1.0, 4, 0))
    print(json.dumps({{"samples": len(out[0].completions)}}))
"""


def test_the_engine_keeps_every_core(tmp_path):
    model = tmp_path / "model"
    tinymodel.build_tiny_model(model, pretraining=tinymodel.Pretraining(target_pass1=None, max_steps=0))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(model=str(model))],
        capture_output=True,
        text=True,
        env={**env, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"samples": 2}
    # vLLM logs its decision (torch_utils); torch.get_num_threads() in this thread does not show it.
    assert "Reducing Torch threads" not in proc.stdout + proc.stderr
    assert f"leaving Torch threads at {len(os.sched_getaffinity(0))}" in proc.stdout + proc.stderr
