"""A flaky object store loses nothing: the storage layer and the commit protocol through a proxy that throttles
(503 SlowDown), fails (500) and drops connections in front of the real S3 server."""

from __future__ import annotations

import hashlib
import os

import pytest
from faultproxy import FaultProxy

from tpt_stages import manifest
from tpt_stages.records import Problem
from tpt_stages.storage import open_store


@pytest.fixture
def flaky(s3_server, s3_bucket):
    proxy = FaultProxy(s3_server, slow_every=4, error_every=7, reset_every=9).start()
    yield proxy, open_store(f"s3://{s3_bucket}/flaky", endpoint=proxy.endpoint)
    proxy.stop()


def test_every_operation_survives_throttling_errors_and_dropped_connections(flaky, tmp_path):
    proxy, store = flaky
    blobs = {f"a/{i}.bin": os.urandom(1000 + i) for i in range(6)}
    for key, data in blobs.items():
        store.write_bytes(key, data)
    assert store.list("a") == sorted(blobs)
    assert all(store.read_bytes(k) == v for k, v in blobs.items())
    assert store.exists("a/0.bin") and not store.exists("a/none.bin")

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(70_000_000))  # above the multipart threshold: two parts, each retried alone
    store.upload_file(big, "model/weights.bin")
    store.download_file("model/weights.bin", tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    assert store.delete_prefix("a") == 6 and store.list("a") == []
    # The faults really happened, of every kind: this test cannot pass on a healthy store alone.
    assert proxy.slowed > 0 and proxy.errored > 0 and proxy.reset > 0, vars(proxy)


def test_a_stage_commits_through_a_flaky_store_and_its_manifest_matches_what_is_stored(flaky):
    proxy, store = flaky
    rows = [Problem(id=f"p{i}", question=f"q{i}") for i in range(200)]
    out = manifest.StageOutput(store, "round-00/verify/shard-00000", stage="verify", round=0, shard=0)
    for split in ("train", "test"):
        out.write_jsonl(f"{split}.jsonl", rows)
    out.commit({"samples": 400})

    done = manifest.read(store, "round-00/verify/shard-00000")
    assert done is not None and done.report == {"samples": 400}
    for entry in done.files:
        data = store.read_bytes(f"round-00/verify/shard-00000/{entry.path}")
        assert (len(data), hashlib.sha256(data).hexdigest(), entry.rows) == (entry.size, entry.sha256, 200)
    assert manifest.read_jsonl(store, "round-00/verify/shard-00000/test.jsonl", Problem) == rows
    assert proxy.requests > proxy.slowed + proxy.errored + proxy.reset > 0
