"""Fixtures for the operator tests: an emulated API server, a test kubelet, and the real operator under kopf."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before the operator's handlers module is imported (it reads its config once): no ports, quick resync.
os.environ.setdefault("TPT_METRICS_PORT", "0")
os.environ.setdefault("TPT_HEALTH_PORT", "0")
os.environ.setdefault("TPT_RESYNC_SECONDS", "5")
os.environ.setdefault("TPT_OPERATOR_CONFIG", "/nonexistent")

from emulator import Cluster
from kubelet import Kubelet


@pytest.fixture
def cluster(kube_api, sir_crd, tmp_path, monkeypatch) -> Iterator[Cluster]:
    """The operator's test cluster, empty: SelfImprovementRuns on the real API server (`kube_api`, with our CRD),
    Jobs, Pods, Events and Secrets in the emulator, one URL for both (front.py) in $KUBECONFIG."""
    c = Cluster(real=kube_api).start()
    monkeypatch.setenv("KUBECONFIG", str(c.kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield c
    finally:
        c.stop()


@contextlib.contextmanager
def kubelet_running(cluster: Cluster, workdir: Path, **kwargs) -> Iterator[Kubelet]:
    k = Kubelet(cluster.url, workdir, **kwargs)
    asyncio.run_coroutine_threadsafe(k.start(), cluster.loop).result(10)
    try:
        yield k
    finally:
        asyncio.run_coroutine_threadsafe(k.stop(), cluster.loop).result(60)


@contextlib.contextmanager
def operator_process(log: Path) -> Iterator[subprocess.Popen]:
    """The operator as its container runs it (`python -m tpt_operator`, $KUBECONFIG), SIGKILLed on exit: a crash
    at whatever it was doing, not a graceful shutdown."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tpt_operator"], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


@contextlib.contextmanager
def operator_running(timeout: float = 30) -> Iterator[object]:
    """The real operator (`kopf run` of tpt_operator.handlers) in a thread, as KopfRunner runs it."""
    from kopf.testing import KopfRunner

    import tpt_operator.handlers  # noqa: F401  (registers the handlers)

    args = ["run", "--standalone", "-A", "-m", "tpt_operator.handlers"]
    with KopfRunner(args, timeout=timeout) as runner:
        yield runner
