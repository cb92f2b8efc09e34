"""RBAC against what the operator really calls: run the real operator (kopf) against the emulated API server of
tests/operator, record every request it makes (kopf's client sends `User-Agent: kopf/...`; the test kubelet and
the test itself do not), and check each one is granted by the chart's rules, and every rule is used.

The run exercises everything the operator does to the API: a two-round run with two-node training (the headless
Service), then deletion of the run (the finalizer deletes its Jobs and Services).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "operator"))
# The operator reads its configuration when its handlers module is imported: no ports, a quick resync.
for key, value in {"TPT_METRICS_PORT": "0", "TPT_HEALTH_PORT": "0", "TPT_RESYNC_SECONDS": "5"}.items():
    os.environ.setdefault(key, value)
os.environ.setdefault("TPT_OPERATOR_CONFIG", "/nonexistent")

pytest.importorskip("kmock")
emulator = pytest.importorskip("emulator", reason="tests/operator/emulator.py not importable")
kubelet = pytest.importorskip("kubelet", reason="tests/operator/kubelet.py not importable")
pytest.importorskip("tpt_operator.handlers", reason="tpt_operator not importable")

from runs import run_doc, wait_for  # noqa: E402
from test_chart import RULES  # noqa: E402  (the chart's rules, checked against the rendered chart there)

# Granted but not seen as a request, and why that is right.
NOT_A_REQUEST = {
    ("update", "tpt.dev", "selfimprovementruns/finalizers"): "checked by admission when a Job/Service with "
    "blockOwnerDeletion is created (OwnerReferencesPermissionEnforcement); no request of its own",
}
MAY_BE_UNUSED = {
    # kopf fetches a run or its status only in some retry paths; a read of our own objects.
    ("get", "tpt.dev", "selfimprovementruns"),
    ("get", "tpt.dev", "selfimprovementruns/status"),
}
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def _verb(request) -> str:
    if request.method.value == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if request.method.value == "DELETE" and not request.name:
        return "deletecollection"
    return VERBS[request.method.value]


@pytest.mark.timeout(180)
def test_operator_calls_only_what_the_chart_grants(tmp_path, monkeypatch):
    from kopf.testing import KopfRunner

    seen: set[tuple[str, str, str]] = set()
    original = emulator.Emulator._handle

    async def recording(self, request):
        if request.headers.get("User-Agent", "").startswith("kopf/") and request.resource and request.resource.plural:
            resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
            seen.add((_verb(request), request.resource.group or "", resource))
        return await original(self, request)

    monkeypatch.setattr(emulator.Emulator, "_handle", recording)  # a slotted attrs class: patch the class
    cluster = emulator.Cluster().start()
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
    k = kubelet.Kubelet(cluster.url, tmp_path, fake=kubelet.default_fake)
    asyncio.run_coroutine_threadsafe(k.start(), cluster.loop).result(10)
    try:
        import tpt_operator.handlers  # noqa: F401  (registers the handlers)

        with KopfRunner(["run", "--standalone", "-A", "-m", "tpt_operator.handlers"], timeout=60):
            cluster.secret("tpt-s3", {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
            url = cluster.runs_url()
            cluster.create(url, run_doc("audit", resources={"think": {"gpus": 0}, "train": {"gpus": 0, "nodes": 2}}))
            phase = lambda: ((cluster.run("audit") or {}).get("status") or {}).get("phase")  # noqa: E731
            try:
                wait_for(lambda: phase() == "Succeeded", 60, "the run to succeed")
            except AssertionError as e:
                st = (cluster.run("audit") or {}).get("status") or {}
                jobs = [j["metadata"]["name"] for j in cluster.jobs()]
                raise AssertionError(f"{e}: {st.get('phase')} {st.get('message')} jobs={jobs}") from None
            # Deleting the run deletes its Jobs and the training Service (the operator's finalizer).
            cluster.delete(f"{url}/audit")
            wait_for(lambda: cluster.run("audit") is None, 30, "the run to be deleted")
    finally:
        asyncio.run_coroutine_threadsafe(k.stop(), cluster.loop).result(60)
        cluster.stop()

    granted = {(verb, group, resource) for (group, resource), verbs in RULES.items() for verb in verbs}
    assert seen, "no request from kopf was recorded"
    assert seen <= granted, f"the operator calls what the chart does not grant: {sorted(seen - granted)}"
    unused = granted - seen - set(NOT_A_REQUEST) - MAY_BE_UNUSED
    assert not unused, f"the chart grants what the operator never called: {sorted(unused)}"
