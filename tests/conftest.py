"""Shared fixtures: real servers, no mocks of our own code."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import s3server


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


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the real S3 server; returns its name."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def weak_tiny_model(tmp_path_factory) -> Path:
    """The quick start's kind of base model, pre-trained until it solves some arith problems (about a minute):
    runs need correct samples to prune down to, so an untrained model cannot stand in for it."""
    from tpt_stages.tinymodel import Pretraining, build_tiny_model

    out = tmp_path_factory.mktemp("weak-tiny-model")
    build_tiny_model(out, pretraining=Pretraining(target_pass1=0.12), seed=0, log=lambda *a: None)
    return out
