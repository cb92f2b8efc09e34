"""The built operator image (`make images`), run as the chart runs it: the Deployment and ConfigMap `helm template`
renders, turned into `podman run` options (uid 10001, read-only root, all capabilities dropped, no privilege
escalation, /tmp an emptyDir, the configuration mounted at /etc/tpt-operator), against the test cluster of the
operator e2e (the `cluster` fixture; host networking reaches its loopback server, a kubeconfig stands in for the
service-account token). Its stages are the test kubelet's fakes: what is under test is the operator in its image.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubelet as kl
import podman
import requests
import yaml
from conftest import kubelet_running
from runs import run_doc, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
CREDS = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
NAMESPACE = "tpt-system"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chart(health_port: int, metrics_port: int) -> tuple[dict, dict]:
    """(the operator Deployment, its ConfigMap) as the chart renders them, on ports free on this host."""
    out = subprocess.run(
        [str(TOOLS / "helm"), "template", "tpt", str(ROOT / "charts" / "tpt-operator"), "--namespace", NAMESPACE,
         "--set", f"health.port={health_port}", "--set", f"metrics.port={metrics_port}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    objs = [o for o in yaml.safe_load_all(out) if o]
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    configmap = next(o for o in objs if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {}))
    return deployment, configmap


def readable_dir(path: Path, files: dict[str, str]) -> Path:
    """A directory the operator's uid can read (pytest's temporary directories are root's, mode 0700)."""
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    for name, text in files.items():
        (path / name).write_text(text)
        (path / name).chmod(0o644)
    return path


@contextlib.contextmanager
def operator_container(tmp_path: Path) -> Iterator[tuple[str, int, dict]]:
    """The operator image running as the chart's pod; yields (container name, health port, pod spec)."""
    ref = podman.image("operator")
    health, metrics = free_port(), free_port()
    deployment, configmap = chart(health, metrics)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = readable_dir(tmp_path / "config", {"config.yaml": configmap["data"]["config.yaml"]})
    # Whatever the test cluster's kubeconfig refers to (certificates, keys) inlined into one file.
    flat = subprocess.run(
        [str(TOOLS / "kubectl"), "config", "view", "--flatten", "--minify"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    kube = readable_dir(tmp_path / "kube", {"config": flat})
    name = f"tpt-operator-test-{uuid.uuid4().hex[:8]}"
    options = podman.run_args(pod, container, namespace=NAMESPACE, config_dirs={"config": config})
    podman.podman(
        "run", "-d", "--name", name, "--network", "host", *options,
        "-v", f"{kube}:/var/run/tpt-kube:ro", "--env", "KUBECONFIG=/var/run/tpt-kube/config",
        "--env", "TPT_RESYNC_SECONDS=5",  # as the in-process operator tests: a quick periodic re-reconcile
        ref, *container.get("args", []),
    )  # fmt: skip
    try:
        yield name, health, pod
    finally:
        logs = podman.podman("logs", name, check=False)
        print(logs.stdout[-5000:], logs.stderr[-5000:])
        podman.podman("rm", "-f", "-t", "5", name, check=False)


def healthy(port: int) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    return False


def process_status(name: str) -> dict[str, str]:
    """/proc/1/status of the container: the operator process itself, as the kernel sees it."""
    out = podman.podman("exec", name, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


WRITE_PROBE = """
import os
ok = []
for d in ("/", "/opt/venv", "/etc", "/home", "/var/tmp", "/usr/local", "/tmp", "/etc/tpt-operator"):
    try:
        with open(os.path.join(d, "probe"), "w") as f:
            f.write("x")
        ok.append(d)
    except OSError:
        pass
print(" ".join(ok))
"""


def test_operator_image_runs_with_the_charts_pod_security_and_serves_health(cluster, tmp_path):
    with operator_container(tmp_path) as (name, health, pod):
        wait_for(lambda: healthy(health), 120, "the operator's /healthz")
        status = process_status(name)
        sc = pod["containers"][0]["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
        assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
        assert pod["securityContext"]["runAsUser"] == 10001
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[caps], 16) == 0, (caps, status[caps])
        assert status["NoNewPrivs"] == "1"
        # The process is the image's entrypoint (tpt-operator from the image's venv), not something else.
        cmdline = podman.podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert cmdline[1] == "/opt/venv/bin/tpt-operator", cmdline
        written = podman.podman("exec", name, "python", "-c", WRITE_PROBE).stdout.split()
        assert written == ["/tmp"], written


def test_operator_image_reconciles_a_run_to_succeeded(cluster, tmp_path):
    with (
        kubelet_running(cluster, tmp_path, fake=kl.default_fake),
        operator_container(tmp_path) as (_, health, _pod),
    ):
        cluster.secret("tpt-s3", CREDS)
        wait_for(lambda: healthy(health), 120, "the operator's /healthz")
        start = time.monotonic()
        cluster.create(cluster.runs_url(), run_doc("in-image"))
        wait_for(lambda: ((cluster.run("in-image") or {}).get("status") or {}).get("phase") == "Succeeded", 180,
                 "the run to succeed")  # fmt: skip
        print(f"run reconciled to Succeeded by the operator image in {time.monotonic() - start:.1f} s")
    st = cluster.run("in-image")["status"]
    assert st["reason"] == "Completed" and [r["pass1"] for r in st["rounds"]] == [0.2, 0.3, 0.4]
    names = sorted(j["metadata"]["name"] for j in cluster.jobs())
    assert len(names) == 1 + 3 * 3 + 2 * 2 and "in-image-r02-score-a0" in names
    assert all(n == 1 for n in cluster.job_creations().values())
