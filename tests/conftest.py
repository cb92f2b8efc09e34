"""Shared fixtures: real servers, no mocks of our own code."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import kubeapi
import pytest
import s3server

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "tests"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server over HTTP: SeaweedFS (`weed mini`). Yields the endpoint URL with AWS_* set for boto3.
    A server already on the port (another pytest process on this machine) is reused: every test uses a bucket
    of its own, so they do not interfere."""
    saved = {k: os.environ.get(k) for k in [*s3server.KEYS, "AWS_ENDPOINT_URL_S3"]}
    proc = s3server.start(tmp_path_factory.mktemp("seaweedfs"))
    yield s3server.ENDPOINT
    s3server.stop(proc)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory):
    """A real Kubernetes API server (etcd + apiextensions-apiserver, tests/kubeapi.py) on free loopback ports.
    Yields a kubeapi.KubeAPI: url, ca/client_cert/client_key, kubeconfig, and a small HTTP client. Without the
    binary the tests fail (CI must run them): `make apiserver` builds it."""
    try:
        api, procs = kubeapi.start(tmp_path_factory.mktemp("kubeapi"))
    except kubeapi.Missing as e:
        pytest.fail(str(e), pytrace=False)
    yield api
    kubeapi.stop(procs)


@pytest.fixture(scope="session")
def sir_crd(kube_api) -> dict:
    """The SelfImprovementRun CRD from crds/, installed on the real server and Established."""
    import yaml

    path = Path(__file__).resolve().parent.parent / "crds" / "selfimprovementrun.yaml"
    return kube_api.apply_crd(yaml.safe_load(path.read_text()))


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the real S3 server; returns its name."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


def cached_tiny_model(name: str, task, pretraining) -> Path:
    """A tiny model built once per machine and per version of the code that makes it (tinymodel.py and the
    generator), under a lock that serialises concurrent pytest processes; every test reads it and none
    writes it. Building one costs minutes of CPU."""
    import fcntl
    import hashlib

    from tpt_stages import tinymodel
    from tpt_stages.tasks import arith

    code = b"".join(Path(m.__file__).read_bytes() for m in (tinymodel, arith)) + repr((task, pretraining)).encode()
    out = CACHE / f"{name}-{hashlib.sha256(code).hexdigest()[:12]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "tiny_model.json").exists():
            tmp = out.with_suffix(".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tinymodel.build_tiny_model(tmp, task=task, pretraining=pretraining, seed=0, log=print)
            tmp.rename(out)
    return out


@pytest.fixture(scope="session")
def weak_tiny_model() -> Path:
    """The quick start's kind of base model, pre-trained until it solves some arith problems: runs need
    correct samples to prune down to, so an untrained model cannot stand in for it."""
    from tpt_stages import tinymodel

    # A fixed step count rather than a Pass@1 target: no sampled evaluations during pre-training (they cost
    # more than the steps), and a build time that does not depend on luck. 250 steps give ~9% Pass@1.
    pretraining = tinymodel.Pretraining(target_pass1=None, max_steps=250)
    return cached_tiny_model("weak-tiny-model", tinymodel.default_task(), pretraining)


@pytest.fixture(scope="session")
def weak_tiny_code_model() -> Path:
    """The same kind of model for the generated code task (the arith stories as programs to write). 150 steps
    give 5-10% Pass@1: it writes the right structure and operators but often copies a number wrongly."""
    from tpt_stages import tinymodel
    from tpt_stages.spec import TaskKind

    pretraining = tinymodel.Pretraining(target_pass1=None, max_steps=150)
    return cached_tiny_model("weak-tiny-code-model", tinymodel.default_task(TaskKind.code), pretraining)
