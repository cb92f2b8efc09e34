"""A Kubernetes API for tests: kmock's emulator, extended where kopf and our operator need a real server's habits.

kmock 0.8 stores objects and streams watch events but leaves out what an API server adds by itself
(FACTS.md). This subclass stamps `uid`, `resourceVersion`, `creationTimestamp`, `generation` (bumped on spec
changes), expands `generateName`, answers a failed JSON-patch `test` with 422 (kopf's and our optimistic
concurrency rely on it), keeps a `/status` patch to the status, and garbage-collects dependants by
ownerReference when an owner is deleted. It counts successful creations per object, which the chaos tests
use to prove that no Job was ever created twice.

`Cluster` runs it on a private event loop in a thread, so tests stay synchronous while the operator
(`kopf.testing.KopfRunner`, its own thread) and the test kubelet talk to it over real HTTP. Given a real API
server (apiextensions-apiserver, tests/kubeapi.py), it puts the routing front of front.py before both: the
SelfImprovementRuns live on the real server, Jobs, Pods, Events and Secrets in the emulator, and a garbage
collector deletes the emulator's objects whose owner on the real server is gone (kube-controller-manager's job).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import logging
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import jsonpointer
import kmock
import requests
import yaml
from front import REAL_GROUPS, Front
from kmock._internal import enums

from tpt_operator import GROUP, PLURAL, VERSION

NOW = lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")  # noqa: E731


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    _rv: int = attrs.field(default=0, init=False)
    creations: collections.Counter = attrs.field(factory=collections.Counter, init=False)
    created_at: dict = attrs.field(factory=dict, init=False)  # (plural, ns, name) -> time.monotonic()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _current(self, request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key in self._objects and not self._objects[key].deleted:
            return self._objects[key].raw
        return None

    async def _handle(self, request):
        try:
            return await self._serve(request)
        finally:
            # kmock keeps every request and matches each new one by scanning that history for it (its views are
            # views of past requests): quadratic. Keeping only the requests in flight makes it constant.
            with contextlib.suppress(ValueError):
                self._requests.remove(request)

    async def _serve(self, request):
        if request.resource is not None and request.action == enums.action.CREATE and isinstance(request.data, dict):
            request = self._stamp_create(request)
        elif request.resource is not None and request.action == enums.action.UPDATE and request.name:
            request = self._stamp_update(request)
        # An object goes on DELETE, or, when it has finalizers, on the update that removes the last one.
        changes = request.name and request.action in (enums.action.DELETE, enums.action.UPDATE)
        before = self._current(request) if changes else None
        response = await super()._handle(request)
        if before is not None and response.status < 300 and self._current(request) is None:
            await self._collect_dependants(before["metadata"].get("uid"))
        return response

    async def _serve_list(self, request):
        """kmock's list with the `kind` and `apiVersion` a real server sends (kubectl and the dynamic client need
        them to read the items)."""
        payload = await super()._serve_list(request)
        info = next(self._resources[r] for r in self._get_resources() if r == request.resource)
        group_version = "/".join(p for p in (request.resource.group, request.resource.version) if p)
        return {"kind": f"{info.kind}List", "apiVersion": group_version, **payload}

    @staticmethod
    def _replace_data(request, data):
        """kmock matches reactions by the very Request object (attrs.evolve breaks that): edit it in place."""
        object.__setattr__(request, "data", data)
        return request

    def _stamp_create(self, request):
        data = copy.deepcopy(request.data)
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.update(uid=str(uuid.uuid4()), resourceVersion=self._next_rv(), creationTimestamp=NOW(), generation=1)
        key = (request.resource, request.namespace or meta.get("namespace"), meta.get("name"))
        if key not in self._objects or self._objects[key].deleted:
            self.creations[(request.resource.plural, key[1], key[2])] += 1
            self.created_at[(request.resource.plural, key[1], key[2])] = time.monotonic()
        return self._replace_data(request, data)

    def _stamp_update(self, request):
        current = self._current(request)
        if current is None:
            return request  # the emulator answers 404
        data = request.data
        rv = self._next_rv()
        generation = int(current.get("metadata", {}).get("generation") or 1)
        if isinstance(data, list):
            for op in data:
                if op.get("op") == "test":
                    found = jsonpointer.resolve_pointer(current, op["path"], None)
                    if found != op.get("value"):
                        raise kmock.KubernetesError(
                            status=422, reason="Invalid", message=f"test failed at {op['path']}: {found!r}"
                        )
            ops = [op for op in data if op.get("op") != "test"]
            if request.subresource == "status":
                ops = [op for op in ops if op["path"] == "/status" or op["path"].startswith("/status/")]
            elif any(op["path"].startswith("/spec") for op in ops):
                ops.append({"op": "add", "path": "/metadata/generation", "value": generation + 1})
            ops.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
            return self._replace_data(request, ops)
        data = copy.deepcopy(data or {})
        if request.subresource == "status":
            data = {"status": data.get("status")}
        meta = data.setdefault("metadata", {}) or {}
        data["metadata"] = meta
        meta["resourceVersion"] = rv
        if request.subresource is None and "spec" in data and data["spec"] != current.get("spec"):
            meta["generation"] = generation + 1
        return self._replace_data(request, data)

    async def _collect_dependants(self, owner_uid: str | None) -> None:
        """The garbage collector, in brief: delete (recursively) what the deleted object owned."""
        if not owner_uid:
            return
        doomed = []
        async with self._lock:
            for key, obj in list(self._objects.items()):
                if obj.deleted:
                    continue
                owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
                if any(o.get("uid") == owner_uid for o in owners):
                    raw = obj.raw
                    obj.delete()
                    await self._buses[key[0]].put({"type": "DELETED", "object": raw})
                    doomed.append(raw["metadata"].get("uid"))
        for uid in doomed:
            await self._collect_dependants(uid)

    def owner_uids(self, groups: tuple[str, ...]) -> set[str]:
        """The uids that live objects name as owners of an API group in `groups`."""
        return {
            ref["uid"]
            for obj in list(self._objects.values())
            if not obj.deleted
            for ref in obj.raw.get("metadata", {}).get("ownerReferences") or []
            if ref.get("uid") and ref.get("apiVersion", "").split("/")[0] in groups
        }


class Cluster:
    """The emulator served over HTTP from a thread, alone or behind the front with a real API server (`real`, a
    kubeapi.KubeAPI with the CRD installed); sync helpers for tests (plain `requests`)."""

    def __init__(self, real=None) -> None:
        self.real = real
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="kmock")
        self.emulator: Emulator | None = None
        self.front: Front | None = None
        self._server = None
        self._collector: asyncio.Task | None = None
        self.url = ""
        self.http = requests.Session()

    def start(self) -> Cluster:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        if self.real is not None:
            self._wait_served()
            self._forget_runs()  # what earlier tests left on the shared server: this cluster starts empty
        return self

    async def _start(self) -> None:
        self.emulator = Emulator()
        self.emulator.resources.load_bundled()
        if self.real is None:
            self.emulator.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
                kind="SelfImprovementRun", singular="selfimprovementrun", namespaced=True, shortnames={"sir"},
                categories={"tpt"}, subresources={"status"},
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            )  # fmt: skip
        await self.emulator.__aenter__()
        self._server = kmock.Server(self.emulator)
        await self._server.__aenter__()
        self.url = str(self._server.url).rstrip("/")
        self.emulator.objects["v1/namespaces", None, "default"] = {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "uid": str(uuid.uuid4())},
        }  # fmt: skip
        if self.real is not None:
            tls = ssl.create_default_context(cafile=str(self.real.ca))
            tls.load_cert_chain(str(self.real.client_cert), str(self.real.client_key))
            self.front = Front(self.url, self.real.url, tls)
            self.url = await self.front.start()
            self._collector = asyncio.create_task(self._collect_garbage())

    def _wait_served(self, timeout: float = 30) -> None:
        """An Established CRD's resource may answer 404 for a moment more."""
        deadline = time.monotonic() + timeout
        while self.http.get(self.runs_url(), timeout=30).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.runs_url()} is not served: is the CRD installed (fixture sir_crd)?")
            time.sleep(0.05)

    async def _collect_garbage(self) -> None:
        """Delete the emulator's objects whose owner on the real server is gone, as the garbage collector does.

        The owners are read from the emulator first and the real server second: an owner named by a dependant
        existed before that dependant did, so a listing taken afterwards holds it unless it was deleted."""
        async with aiohttp.ClientSession() as http:
            while True:
                await asyncio.sleep(0.2)
                try:
                    owners = self.emulator.owner_uids(REAL_GROUPS)
                    if not owners:
                        continue
                    async with http.get(f"{self.url}/apis/{GROUP}/{VERSION}/{PLURAL}") as r:
                        r.raise_for_status()
                        live = {item["metadata"]["uid"] for item in (await r.json())["items"]}
                    for uid in owners - live:
                        await self.emulator._collect_dependants(uid)
                except Exception:  # keep collecting; a test that depends on it fails on its own outcome
                    logging.getLogger(__name__).exception("garbage collection failed; trying again")

    def _forget_runs(self) -> None:
        """Every run on the shared real server deleted, finalizers dropped, as if the operator had never run."""
        for run in self.list(f"{self.url}/apis/{GROUP}/{VERSION}/{PLURAL}"):
            url = self.runs_url(run["metadata"]["namespace"]) + "/" + run["metadata"]["name"]
            if run["metadata"].get("finalizers"):
                self.http.patch(url, json={"metadata": {"finalizers": None}}, timeout=30,
                                headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
            self.delete(url)

    def stop(self) -> None:
        async def _stop():
            if self._collector is not None:
                self._collector.cancel()
            if self.front is not None:
                await self.front.stop()
            await self._server.__aexit__(None, None, None)
            await self.emulator.__aexit__(None, None, None)

        try:
            if self.real is not None:
                self._forget_runs()
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "kmock", "user": {}}],
                    "contexts": [
                        {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}
                    ],
                }
            )
        )
        return path

    # --- sync helpers over HTTP -------------------------------------------------------------------------------
    def _check(self, r: requests.Response) -> Any:
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.url}: {r.status_code} {r.text[:500]}")
        return r.json()

    def runs_url(self, namespace: str = "default") -> str:
        return f"{self.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    def create(self, url: str, obj: dict) -> dict:
        return self._check(self.http.post(url, json=obj, timeout=30))

    def get(self, url: str) -> dict | None:
        r = self.http.get(url, timeout=30)
        return None if r.status_code == 404 else self._check(r)

    def list(self, url: str) -> list[dict]:
        return self._check(self.http.get(url, timeout=30))["items"]

    def patch(self, url: str, patch: dict) -> dict:
        headers = {"Content-Type": "application/merge-patch+json"}
        return self._check(self.http.patch(url, json=patch, headers=headers, timeout=30))

    def delete(self, url: str) -> dict | None:
        r = self.http.delete(url, timeout=30)
        return None if r.status_code == 404 else self._check(r)

    def secret(self, name: str, data: dict[str, str], namespace: str = "default") -> dict:
        import base64

        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": encoded,
        }
        return self.create(f"{self.url}/api/v1/namespaces/{namespace}/secrets", obj)

    def run(self, name: str, namespace: str = "default") -> dict | None:
        return self.get(f"{self.runs_url(namespace)}/{name}")

    def jobs(self, namespace: str = "default") -> list[dict]:
        return self.list(f"{self.url}/apis/batch/v1/namespaces/{namespace}/jobs")

    def events(self, namespace: str = "default") -> list[dict]:
        return self.list(f"{self.url}/api/v1/namespaces/{namespace}/events")

    def job_creations(self) -> dict[tuple[str, str], int]:
        return {(ns, name): n for (plural, ns, name), n in self.emulator.creations.items() if plural == "jobs"}
