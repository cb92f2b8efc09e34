"""Operator benchmark: N concurrent runs in the emulated API with the fake (instant) test kubelet.

The operator runs as its own process (`python -m tpt_operator`, as in its container) against kmock's emulator
(tests/operator/emulator.py); the kubelet completes every Job after `--stage-seconds`. Measured:
- Job succeeded -> next Job created: from the kubelet's Complete status write to the next stage's Job creation
  in the API (p50, p99, max);
- reconcile latency: the operator's own `tpt_reconcile_duration_seconds` histogram (scraped; bucket bounds);
- the operator process's peak RSS.

    .venv/bin/python benchmarks/bench_operator.py [--runs 200] [--rounds 1] [--stage-seconds 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "operator"))
sys.path.insert(0, str(ROOT / "tests"))

import kubelet as kl  # noqa: E402
from emulator import Cluster  # noqa: E402

from tpt_stages.layout import Stage  # noqa: E402
from tpt_stages.planner import stages_of_round  # noqa: E402
from tpt_stages.spec import RunSpec  # noqa: E402


def run_doc(name: str, rounds: int) -> dict:
    return {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "model": {"uri": "s3://models/tiny"},
            "task": {"kind": "arith"},
            "rounds": rounds,
            "storage": {"uri": "s3://tpt-runs", "secretName": "tpt-s3"},
        },
    }


def sequence(rounds: int) -> list[tuple[int, Stage]]:
    spec = RunSpec.model_validate({"model": {"uri": "m"}, "task": {"kind": "arith"}, "rounds": rounds})
    return [(r, s) for r in range(rounds + 1) for s in stages_of_round(spec, r)]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def histogram_quantiles(text: str, name: str, qs=(0.5, 0.99)) -> dict[float, float]:
    buckets = [(float(le), float(v)) for le, v in re.findall(rf'{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)', text)]
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in qs:
        out[q] = next((le for le, c in buckets if c >= q * total), float("inf"))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--stage-seconds", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--metrics-port", type=int, default=19090)
    args = p.parse_args()

    cluster = Cluster().start()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    kubeconfig = cluster.kubeconfig(work / "kubeconfig")
    kubelet = kl.Kubelet(cluster.url, work, fake=kl.default_fake, fake_seconds=args.stage_seconds, poll=0.1)
    asyncio.run_coroutine_threadsafe(kubelet.start(), cluster.loop).result(10)
    cluster.secret("tpt-s3", {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "TPT_METRICS_PORT": str(args.metrics_port),
           "TPT_HEALTH_PORT": "0", "TPT_OPERATOR_CONFIG": "/nonexistent"}  # fmt: skip
    log = open(work / "operator.log", "w")  # noqa: SIM115  (the operator process writes it until the end)
    operator = subprocess.Popen([sys.executable, "-m", "tpt_operator"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        names = [f"bench-{i:03d}" for i in range(args.runs)]
        t0 = time.monotonic()
        for name in names:
            cluster.create(cluster.runs_url(), run_doc(name, args.rounds))
        deadline = t0 + args.timeout
        while time.monotonic() < deadline:
            runs = cluster.list(cluster.runs_url())
            done = sum(1 for r in runs if (r.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
            if done == len(names):
                break
            time.sleep(1)
        wall = time.monotonic() - t0
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{args.metrics_port}/metrics", timeout=10).read().decode()
        peak_rss = rss_kb(operator.pid)
    finally:
        operator.terminate()
        operator.wait(30)
        asyncio.run_coroutine_threadsafe(kubelet.stop(), cluster.loop).result(60)

    seq = sequence(args.rounds)
    latencies = []
    for name in names:
        for (r0, s0), (r1, s1) in itertools.pairwise(seq):
            done_at = kubelet.completed_at.get(("default", f"{name}-r{r0:02d}-{s0.value}-a0"))
            created = cluster.emulator.created_at.get(("jobs", "default", f"{name}-r{r1:02d}-{s1.value}-a0"))
            if done_at is not None and created is not None:
                latencies.append(created - done_at)
    succeeded = sum(1 for r in cluster.list(cluster.runs_url()) if r["status"]["phase"] == "Succeeded")
    duplicates = sum(1 for n in cluster.job_creations().values() if n > 1)
    cluster.stop()
    rq = histogram_quantiles(metrics, "tpt_reconcile_duration_seconds")
    lines = [
        f"- {args.runs} concurrent runs × {len(seq)} stages ({len(latencies)} transitions), fake stages of "
        f"{args.stage_seconds}s, {succeeded}/{args.runs} Succeeded in {wall:.0f}s, {duplicates} Jobs created twice",
        f"- Job succeeded → next Job created: p50 {statistics.median(latencies):.3f}s, p99 {pct(latencies, 0.99):.3f}s, "
        f"max {max(latencies):.3f}s",
        f"- reconcile latency (operator histogram, bucket upper bounds): p50 ≤ {rq[0.5]}s, p99 ≤ {rq[0.99]}s",
        f"- operator peak RSS: {peak_rss / 1024:.0f} MiB",
        f"- machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}; emulator, kubelet and operator share these cores",
    ]
    print("\n".join(lines))
    return 0 if succeeded == args.runs and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
