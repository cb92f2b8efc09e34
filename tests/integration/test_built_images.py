"""The images `make images` built, as artefacts: their metadata says what they are (the base actually used, the
project version, a commit of this repository), and the locally made base behaves like the official
`python:*-slim` where the Dockerfiles depend on it. How they run: tests/operator/test_operator_image.py and
tests/sandbox/test_sandbox_image.py."""

from __future__ import annotations

import re
import subprocess

import podman
import pytest

IMAGES = {"operator": "tpt-operator", "sandbox": "tpt-sandbox"}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_labels_name_the_base_used_and_the_versions(name):
    ref = podman.image(name)
    meta = podman.inspect(ref)
    labels = meta["Labels"]
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items()}
    assert oci["title"] == IMAGES[name] and oci["licenses"] == "Apache-2.0"
    assert oci["version"] == podman.VERSION
    revision = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", oci["revision"])
    assert revision, oci["revision"]
    known = subprocess.run(["git", "-C", str(podman.ROOT), "cat-file", "-e", f"{revision.group(1)}^{{commit}}"])
    assert known.returncode == 0, f"{oci['revision']} is not a commit of this repository"
    # The base the label names is the one the image is built on: its layers are the image's first layers.
    assert oci["base.name"] == podman.BASE
    base = podman.inspect(podman.BASE)
    assert meta["RootFS"]["Layers"][: len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"]
    # ...and the base's own labels, inherited, say how it was made and which Python it holds.
    assert labels["dev.tpt.base.recipe"] == base["Labels"]["dev.tpt.base.recipe"]
    python = podman.podman("run", "--rm", *podman.ULIMITS, "--entrypoint", "python", ref, "-c",
                           "import platform; print(platform.python_version())").stdout.strip()  # fmt: skip
    assert labels["dev.tpt.base.python"] == python


def test_the_local_base_behaves_like_python_slim():
    """`python` on PATH, pip in its own location (/usr/local) where `pip uninstall` can remove it, no PEP 668
    marker, and `python -m venv` gives a venv with pip (the operator image's build stage makes one)."""
    podman.image("operator")  # the base is made by the same `make images`
    script = """
import glob, os, shutil, subprocess, sys
import pip
print(shutil.which("python"), os.path.dirname(pip.__file__))
print(glob.glob("/usr/lib/python3*/EXTERNALLY-MANAGED") + glob.glob("/usr/local/lib/python3*/EXTERNALLY-MANAGED"))
subprocess.run([sys.executable, "-m", "venv", "/tmp/v"], check=True)
print(os.path.exists("/tmp/v/bin/pip"))
subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "pip"], check=True)
print(subprocess.run([sys.executable, "-c", "import pip"], capture_output=True).returncode)
"""
    out = podman.podman("run", "--rm", *podman.ULIMITS, podman.BASE, "python", "-c", script).stdout.split("\n")
    python, pip_dir = out[0].split()
    assert python in ("/usr/bin/python", "/usr/local/bin/python")
    assert pip_dir.startswith("/usr/local/lib/python3"), pip_dir
    assert out[1:4] == ["[]", "True", "1"], out


def test_the_store_holds_one_build_of_each_image():
    """Each build step is an image (the layer cache); the build script removes those of earlier builds. Without
    that, a machine that rebuilds on every change fills its disk: CI's did, at 43 GB of vfs layers."""
    steps = 0
    for name in IMAGES:
        podman.image(name)  # fails with how to build it when it is missing
        instructions = re.findall(r"^([A-Z]+) ", (podman.ROOT / f"images/{name}/Dockerfile").read_text(), re.M)
        stages = instructions[instructions.index("FROM") :]
        # One image per instruction of a stage but FROM, and the final one relabelled with the build's inputs.
        steps += sum(i != "FROM" for i in stages) + 1
    listed = podman.podman("images", "--all", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").stdout.splitlines()
    assert len(listed) <= steps + 1, "\n".join(listed)  # + the base
