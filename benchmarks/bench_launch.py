"""Launch benchmark: what a stage pays before its own work starts, started as `tpt run` starts it (forked from the
warm fork server, `tpt_stages/launcher.py`) against a fresh interpreter (`subprocess`, what every stage was).

Each launch runs a command that imports what a think stage and a train stage import (vLLM's `LLM`, TRL's
`SFTTrainer`, the stage modules) and exits; the fork server's own start-up (its preload) is reported apart,
since `tpt run` pays it once, not per stage.

    .venv/bin/python benchmarks/bench_launch.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tpt_stages.launcher import StageProcess

STAGE_IMPORTS = (
    "import tpt_stages.stages.think, tpt_stages.stages.train, tpt_stages.engines, tpt_stages.trainer\n"
    "from vllm import LLM\n"
    "from trl import SFTConfig, SFTTrainer\n"
)


def timed(start) -> float:
    t = time.monotonic()
    assert start() == 0
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cmd = [sys.executable, "-c", STAGE_IMPORTS]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        server = timed(lambda: StageProcess([sys.executable, "-c", "pass"], env, log, warm=True).wait())
        rows = {
            "fresh interpreter (subprocess)": lambda: subprocess.run(cmd, capture_output=True).returncode,
            "forked from the warm server (launcher)": lambda: StageProcess(cmd, env, log, warm=True).wait(),
        }
        times: dict[str, list[float]] = {label: [] for label in rows}
        for _ in range(args.repeat):  # alternate, so a change in the machine's load hits both rows alike
            for label, start in rows.items():
                times[label].append(timed(start))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"fork server start with its preload (once per `tpt run`): {server:.1f} s")
    fresh = statistics.median(times["fresh interpreter (subprocess)"])
    print("| start | median s | min s | max s | vs fresh |")
    print("|---|---:|---:|---:|---:|")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"| {label} | {med:.2f} | {min(ts):.2f} | {max(ts):.2f} | {fresh / med:.0f}× |")


if __name__ == "__main__":
    main()
