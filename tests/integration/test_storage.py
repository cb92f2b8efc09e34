"""The storage layer and the commit protocol over local disk and a real S3 server."""

import json
from pathlib import Path

import pytest

from tpt_stages import manifest
from tpt_stages.records import Problem
from tpt_stages.storage import LocalStore, StorageError, local_model_path, open_store, read_uri


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path}/root")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/some/prefix")


def test_round_trip_list_and_delete(store, tmp_path):
    store.write_text("a/b/one.txt", "1")
    store.write_bytes("a/two.bin", b"\x00\x01")
    store.write_text("c.txt", "3")
    assert store.read_text("a/b/one.txt") == "1"
    assert store.exists("a/two.bin") and not store.exists("a/missing")
    assert store.list("a") == ["a/b/one.txt", "a/two.bin"]
    assert store.list() == ["a/b/one.txt", "a/two.bin", "c.txt"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope")
    assert store.delete_prefix("a") == 2
    assert store.list() == ["c.txt"]
    assert store.delete_prefix("c.txt") == 1  # a key is its own prefix, on S3 as on disk
    assert store.list() == []


def test_tpt_delete_removes_a_runs_directory_and_nothing_else(store):
    from tpt_stages.cli import main

    run, bystander = store.child("runs/ns/mine"), store.child("runs/ns/mine-too")
    for s in (run, bystander):
        for key in ("spec.yaml", "status.json", "problems/test.jsonl", "round-00/score/score.json"):
            s.write_text(key, "{}")
    assert main(["delete", run.uri]) == 1 and len(run.list()) == 4  # says what would go; deletes nothing
    assert main(["delete", run.uri, "--yes"]) == 0
    assert run.list() == [] and len(bystander.list()) == 4
    assert main(["delete", run.uri, "--yes"]) == 0  # nothing left: nothing to do
    assert main(["delete", store.child("runs/ns").uri, "--yes"]) == 2  # not a run: refused
    assert len(bystander.list()) == 4


def test_directories_upload_and_download(store, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(b"x" * 70_000_000)  # above the multipart threshold
    store.upload_dir(src, "m")
    back = store.download_dir("m", tmp_path / "back")
    assert (back / "config.json").read_text() == "{}"
    assert (back / "sub" / "weights.bin").stat().st_size == 70_000_000


def test_a_stage_commits_with_its_manifest_last_and_a_rerun_clears_leftovers(store):
    # A crashed attempt left a partial file and never committed.
    store.write_text("round-00/think/shard-00000/partial.jsonl", "half")
    assert manifest.read(store, "round-00/think/shard-00000") is None

    out = manifest.StageOutput(store, "round-00/think/shard-00000", stage="think", round=0, shard=0)
    n = out.write_jsonl("test.jsonl", [Problem(id="p1", question="q"), {"id": "p2"}])
    done = out.commit({"samples": n})
    assert store.list("round-00/think/shard-00000") == [
        "round-00/think/shard-00000/_SUCCESS.json",
        "round-00/think/shard-00000/test.jsonl",
    ]
    got = manifest.read(store, "round-00/think/shard-00000")
    assert got == done and got.rows == 2 and got.report == {"samples": 2}
    assert got.files[0].sha256 and got.versions["python"]


def test_local_files_get_the_usual_mode(tmp_path):
    """report.md, spec.yaml and status.json were 0600 (mkstemp's) while the rest of a run was 0644."""
    plain = tmp_path / "plain"
    plain.write_text("x")
    store = LocalStore(tmp_path / "run")
    store.write_text("status.json", "{}")
    store.write_bytes("report.png", b"png")
    store.upload_file(plain, "model/config.json")
    modes = {key: oct((store.root / key).stat().st_mode & 0o777) for key in store.list()}
    assert modes == dict.fromkeys(["model/config.json", "report.png", "status.json"], oct(plain.stat().st_mode & 0o777))


def test_local_keys_cannot_escape_the_root(tmp_path):
    with pytest.raises(StorageError):
        LocalStore(tmp_path).write_text("../outside", "x")


def test_read_uri_and_model_paths(store, tmp_path):
    store.write_text("d/x.json", json.dumps({"a": 1}))
    assert json.loads(read_uri(f"{store.uri}/d/x.json")) == {"a": 1}
    assert local_model_path("google/gemma-2-2b-it", tmp_path) == "google/gemma-2-2b-it"
    store.write_text("model/config.json", "{}")
    local = local_model_path(f"{store.uri}/model", tmp_path / "cache")
    assert json.loads(Path(local, "config.json").read_text()) == {}
