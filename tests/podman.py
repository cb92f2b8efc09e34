"""The images `make images` built (scripts/build-images.sh), run with podman from the same storage.

Same storage, image names and runtime as the build script: the storage.conf it writes under
~/.cache/tpt/containers (overlay where the kernel mounts it, else vfs), runc (crun fails on these hosts' hybrid cgroups) or runsc for gVisor, and explicit ulimits (podman cannot raise
its own without CAP_SYS_RESOURCE). A missing image fails the test with the command that builds it: CI builds
the images before the suite (`make test` depends on `make images`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
STORE = Path(
    os.environ.get("TPT_CONTAINERS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tpt/containers"
)
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/tpt")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
BASE = f"{PREFIX}/python-base:bookworm"
STORAGE_CONF = STORE / "storage.conf"
ULIMITS = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096"]
# gVisor as podman's runtime: runsc refuses a container in the host's network namespace unless told that
# there is no network.
RUNSC = ["--runtime", "/usr/bin/runsc", "--runtime-flag", "network=none"]


def image(name: str) -> str:
    """The reference of a built image (operator, sandbox); fails the test when it was not built."""
    ref = f"{PREFIX}/{name}:{VERSION}"
    if shutil.which("podman") is None or os.geteuid() != 0:
        pytest.fail("the image tests need root and podman: run `make images` as root first")
    if podman("image", "exists", ref, check=False).returncode != 0:
        pytest.fail(f"{ref} is not built: run `make images` (scripts/build-images.sh)")
    return ref


def podman(*args: str, runtime: list[str] | None = None, check: bool = True, timeout: float = 300, **kw):
    """`podman ARGS` on the build script's storage; text output captured."""
    if not STORAGE_CONF.is_file():
        pytest.fail(f"no {STORAGE_CONF}: run `make images` (scripts/build-images.sh) first")
    argv = ["podman", *(runtime or ["--runtime", "runc"]), *args]
    env = {**kw.pop("env", os.environ), "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def inspect(ref: str) -> dict:
    import json

    return json.loads(podman("image", "inspect", ref).stdout)[0]


def run_args(pod: dict, container: dict, *, namespace: str = "default", config_dirs: dict[str, Path] | None = None):
    """`podman run` options that run `container` of `pod` (a Kubernetes pod spec) as a kubelet would: its user,
    read-only root, capabilities, no privilege escalation, emptyDirs as fresh tmpfs, configMap volumes from
    `config_dirs` (volume name -> host directory), its environment, gVisor for a gVisor runtime class (then
    without a network, as the chart's sandbox NetworkPolicy leaves it none). Then the image, command and args
    follow: `[*run_args(...), image, *args]` with `--entrypoint` already set from `command`."""
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", uid))
    out = ["--rm", *ULIMITS]
    if pod.get("runtimeClassName"):
        out += ["--network", "none"]
    if uid is not None:
        out += ["--user", f"{uid}:{gid}"]
    if sc.get("readOnlyRootFilesystem"):
        # podman would add tmpfs on /tmp, /var/tmp and /run; a kubelet mounts only the pod's volumes.
        out += ["--read-only", "--read-only-tmpfs=false"]
    for cap in (sc.get("capabilities") or {}).get("drop", []):
        out += ["--cap-drop", cap]
    for cap in (sc.get("capabilities") or {}).get("add", []):
        out += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        out += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            out += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
        elif "configMap" in volume:
            out += ["-v", f"{(config_dirs or {})[mount['name']]}:{mount['mountPath']}:ro"]
        else:
            raise ValueError(f"no podman equivalent for volume {volume}")
    for env in container.get("env") or []:
        if "value" in env:
            value = env["value"]
        elif env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            value = namespace
        else:
            raise ValueError(f"no podman equivalent for {env}")
        out += ["--env", f"{env['name']}={value}"]
    if "envFrom" in container:
        raise ValueError("envFrom: the test supplies no Secrets")
    if container.get("command"):
        import json

        out += ["--entrypoint", json.dumps(container["command"])]
    return out


def runtime_of(pod: dict) -> list[str]:
    """podman's runtime for the pod's runtime class: gVisor (handler runsc, the chart's RuntimeClass) or runc."""
    return RUNSC if pod.get("runtimeClassName") else ["--runtime", "runc"]
