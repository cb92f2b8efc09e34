"""The operator's test cluster, seen by the `kubernetes` client through its kubeconfig: one API server.

The front (front.py) must be invisible: discovery merged from both servers (the dynamic client resolves every
kind through `/api` and `/apis`), our runs on the real server, Jobs in the emulator, and a watch streamed through
event by event.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from runs import run_doc

from tpt_operator import GROUP, PLURAL, VERSION

kubernetes = pytest.importorskip("kubernetes")
KUBECTL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "kubectl"


def _client(cluster, tmp_path):
    from kubernetes.dynamic import DynamicClient

    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig(tmp_path / "kubeconfig")))
    return api, DynamicClient(api)


def test_the_dynamic_client_finds_runs_on_the_real_server_and_jobs_in_the_emulator(cluster, kube_api, tmp_path):
    api, dyn = _client(cluster, tmp_path)
    runs = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="SelfImprovementRun")
    jobs = dyn.resources.get(api_version="batch/v1", kind="Job")  # the emulator's half of discovery
    assert runs.name == PLURAL and runs.namespaced and "sir" in runs.short_names
    created = runs.create(body=run_doc("seen"), namespace="default")
    # Created by the real server: it applied the CRD's defaults and stamped the object.
    assert created.spec.maxAttempts is not None and created.metadata.generation == 1
    real = kube_api.get(f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/seen")
    assert real["metadata"]["uid"] == created.metadata.uid
    assert [r.metadata.name for r in runs.get(namespace="default").items] == ["seen"]
    assert jobs.get(namespace="default").items == []
    assert kubernetes.client.BatchV1Api(api).list_namespaced_job("default").items == []
    # The server's own error, passed through: strict field validation names the unknown field.
    bad = run_doc("typo")
    bad["spec"]["roundz"] = 3
    with pytest.raises(kubernetes.dynamic.exceptions.ApiException) as e:
        runs.create(body=bad, namespace="default", query_params=[("fieldValidation", "Strict")])
    assert e.value.status in (400, 422) and "roundz" in e.value.body


def test_a_watch_through_the_front_streams_each_event_without_waiting_for_the_end(cluster, tmp_path):
    api, _ = _client(cluster, tmp_path)
    custom = kubernetes.client.CustomObjectsApi(api)
    since = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"]["resourceVersion"]
    cluster.create(cluster.runs_url(), run_doc("watched"))
    cluster.delete(f"{cluster.runs_url()}/watched")
    seen = []
    started = time.monotonic()
    w = kubernetes.watch.Watch()
    # The server holds the stream open for 30 s: events that arrive well before that were not buffered.
    for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                          resource_version=since, timeout_seconds=30):  # fmt: skip
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "watched"), ("DELETED", "watched")]
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not KUBECTL.exists(), reason=".tools/bin/kubectl missing: run `make tools`")
def test_kubectl_reads_both_halves_with_the_printer_columns(cluster, tmp_path):
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig")
    cluster.create(cluster.runs_url(), run_doc("listed"))

    def kubectl(*args: str) -> str:
        return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                              text=True, check=True, timeout=60).stdout  # fmt: skip

    header, row = kubectl("get", "sir").splitlines()
    assert header.split() == ["NAME", "PHASE", "ROUND", "STAGE", "PASS@1", "AGE"] and row.startswith("listed ")
    assert kubectl("get", "jobs", "-o", "name") == ""
