"""A real Kubernetes API server for the tests: etcd + Kubernetes' apiextensions-apiserver on loopback.

apiextensions-apiserver is the CRD half of kube-apiserver (the same CRD validation, structural schemas, defaulting,
pruning, CEL rules, status subresource and printer columns); `make apiserver` builds it once per machine
(scripts/build-apiserver.sh). It serves only `/apis/apiextensions.k8s.io` and custom resources: no `/api`, no
discovery of core kinds, no namespaces (NamespaceLifecycle is off, so objects go in any namespace name).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procgroup
import requests
import yaml

CACHE = Path(
    os.environ.get("APISERVER_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tpt" / "apiserver"
)
BINARY = CACHE / "bin" / "apiextensions-apiserver"
# Plugins that need the core API (namespaces, webhooks, admission policies), which this server does not serve.
DISABLED_ADMISSION = (
    "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,"
    "ValidatingAdmissionWebhook"
)
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


class Missing(RuntimeError):
    """The server or etcd is not installed on this machine."""


def missing() -> str | None:
    """Why the server cannot start here, or None."""
    if not BINARY.is_file():
        return f"{BINARY} is missing: run `make apiserver` (scripts/build-apiserver.sh) once on this machine"
    if shutil.which("etcd") is None:
        return "etcd is missing: run `make apiserver` (it installs Debian's etcd-server)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d: Path) -> None:
    """A CA; a server certificate for 127.0.0.1; a client certificate in group system:masters, which the
    server's delegated authorizer always allows (it has no authorization API of its own to ask)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=tpt-test-ca",
             "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")  # fmt: skip
    for name, subj, ext in (
        ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "/O=system:masters/CN=tpt-test", "extendedKeyUsage=clientAuth"),
    ):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", f"{d}/{name}.key",
                 "-out", f"{d}/{name}.csr")  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.crt")  # fmt: skip


def kubeconfig(url: str, d: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": str(d / "ca.crt")}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(d / "client.crt"), "client-key": str(d / "client.key")},
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }


class APIError(AssertionError):
    """A response other than the one expected; carries the server's Status."""

    def __init__(self, response: requests.Response):
        self.status = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = {"message": response.text}
        super().__init__(f"{response.request.method} {response.url}: {self.status} {self.body.get('message')}")


@dataclass
class KubeAPI:
    """A running server: its URL, TLS files and kubeconfig, and a small HTTP client for tests."""

    url: str
    certs: Path
    kubeconfig: Path
    startup_seconds: float
    session: requests.Session = field(repr=False)

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.certs / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.certs / "client.key"

    def request(self, method: str, path: str, body: Any = None, *, params: dict | None = None,
                headers: dict | None = None, ok: bool = True) -> requests.Response:  # fmt: skip
        """One call; with `ok` (the default) anything but 2xx raises APIError with the server's message."""
        h = {"Accept": "application/json", **(headers or {})}
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        r = self.session.request(method, self.url + path, data=body, params=params, headers=h, timeout=30)
        if ok and not r.ok:
            raise APIError(r)
        return r

    def get(self, path: str, **kw) -> dict:
        return self.request("GET", path, **kw).json()

    def create(self, path: str, obj: dict, **kw) -> dict:
        """POST with strict field validation, as kubectl sends it: unknown or duplicate fields are errors."""
        return self.request(
            "POST", path, obj, params={"fieldValidation": "Strict", **kw.pop("params", {})}, **kw
        ).json()

    def replace(self, path: str, obj: dict, **kw) -> dict:
        return self.request("PUT", path, obj, params={"fieldValidation": "Strict", **kw.pop("params", {})}, **kw).json()

    def merge_patch(self, path: str, patch: dict, **kw) -> dict:
        headers = {"Content-Type": "application/merge-patch+json"}
        return self.request("PATCH", path, patch, params={"fieldValidation": "Strict"}, headers=headers, **kw).json()

    def apply_crd(self, crd: dict, timeout: float = 30) -> dict:
        """Create or replace a CustomResourceDefinition and wait until it is Established (its API is served)."""
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        name = crd["metadata"]["name"]
        r = self.request("GET", f"{base}/{name}", ok=False)
        if r.status_code == 404:
            self.create(base, crd)
        else:
            r.raise_for_status()
            self.replace(f"{base}/{name}", {**crd, "metadata": {**crd["metadata"], "resourceVersion": r.json()["metadata"]["resourceVersion"]}})  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            got = self.get(f"{base}/{name}")
            conditions = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
            if conditions.get("Established", {}).get("status") == "True":
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} not Established after {timeout} s: {list(conditions.values())}")
            time.sleep(0.05)

    @staticmethod
    def namespace() -> str:
        """A fresh namespace name: objects of different tests never meet (no Namespace object is needed)."""
        return f"t-{uuid.uuid4().hex[:10]}"


def _wait(proc: subprocess.Popen, log: Path, what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM in reverse start order (server before etcd), SIGKILL whatever lingers."""
    for proc in reversed(procs):
        procgroup.stop(proc)


def start(d: Path, timeout: float = 60) -> tuple[KubeAPI, list[subprocess.Popen]]:
    """etcd and the server on free loopback ports under `d`; returns when `/readyz` answers ok (less the
    informer-sync check, which never passes without a core API)."""
    why = missing()
    if why:
        raise Missing(why)
    t0 = time.monotonic()
    d.mkdir(parents=True, exist_ok=True)
    make_certs(d)
    etcd_port, peer_port, port = free_port(), free_port(), free_port()
    etcd_url, peer_url, url = (
        f"http://127.0.0.1:{etcd_port}",
        f"http://127.0.0.1:{peer_port}",
        f"https://127.0.0.1:{port}",
    )
    procs: list[subprocess.Popen] = []
    try:
        etcd = _spawn([
            "etcd", "--name=test", f"--data-dir={d}/etcd", f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}", f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}", f"--initial-cluster=test={peer_url}",
        ], d / "etcd.log")  # fmt: skip
        procs.append(etcd)

        def etcd_ready() -> bool:
            try:
                return requests.get(f"{etcd_url}/health", timeout=1).json().get("health") == "true"
            except (requests.RequestException, ValueError):
                return False

        _wait(etcd, d / "etcd.log", "etcd", etcd_ready, timeout)
        config = d / "kubeconfig"
        config.write_text(yaml.safe_dump(kubeconfig(url, d)))
        server = _spawn([
            str(BINARY), f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={d}", f"--tls-cert-file={d}/server.crt", f"--tls-private-key-file={d}/server.key",
            f"--client-ca-file={d}/ca.crt", f"--kubeconfig={config}", f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}", "--authentication-skip-lookup",
            "--enable-priority-and-fairness=false", f"--disable-admission-plugins={DISABLED_ADMISSION}",
        ], d / "apiserver.log")  # fmt: skip
        procs.append(server)
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides our CA
        session.verify = str(d / "ca.crt")
        session.cert = (str(d / "client.crt"), str(d / "client.key"))

        def server_ready() -> bool:
            try:
                return session.get(f"{url}/readyz", params={"exclude": "informer-sync"}, timeout=1).ok
            except requests.RequestException:
                return False

        _wait(server, d / "apiserver.log", "apiextensions-apiserver", server_ready, timeout)
    except BaseException:
        stop(procs)
        raise
    return KubeAPI(url, d, config, time.monotonic() - t0, session), procs
