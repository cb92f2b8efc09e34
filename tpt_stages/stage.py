"""What every stage shares: its context, the commit-once wrapper and the report channel.

A stage reports a small JSON summary (metrics, counts, artifact URIs, timings; at most 4 KB) to the file named
by `$TPT_REPORT_FILE`, or to Kubernetes' `/dev/termination-log` inside a pod. The local runner and the operator
read that same summary: the operator from the finished pod's termination message, so it never needs access
to the object store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from tpt_stages import layout, manifest
from tpt_stages.manifest import StageOutput
from tpt_stages.records import Problem
from tpt_stages.spec import PruneStrategy, SelfImprovementRun
from tpt_stages.storage import Store, is_local_path, local_model_path, open_store

TERMINATION_LOG = Path("/dev/termination-log")
REPORT_LIMIT = 4096

T = TypeVar("T")


class StageError(RuntimeError):
    """A stage cannot proceed for a reason the user must fix (bad data, contamination, missing input)."""


class InfrastructureError(RuntimeError):
    """What a stage runs on failed (the code sandbox, a grader), not the model or the input: the stage commits
    nothing and exits 1, so the planner retries it and, if it persists, fails the run naming the cause."""


@dataclass
class Context:
    run: SelfImprovementRun
    store: Store
    round: int
    shard: int | None = None
    num_shards: int = 1
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("TPT_CACHE_DIR", "~/.cache/tpt")).expanduser())
    sandbox_backend: str = "auto"
    #: cluster sandbox pod: the inputs in the workdir go once read, before any model-written program runs
    scrub_inputs: bool = False

    @property
    def spec(self):
        return self.run.spec

    def model_uri(self, r: int) -> str:
        return self.spec.model.uri if r == 0 else f"{self.store.uri}/{layout.model_dir(r)}"

    def local_model(self, r: int) -> str:
        uri = self.model_uri(r)
        path = local_model_path(uri, self.cache_dir / "models")
        # A base-model path that holds no model is the user's to fix: one line now, instead of a library's
        # traceback that the planner would take for a failed attempt and retry.
        if r == 0 and is_local_path(uri) and not (Path(path) / "config.json").is_file():
            raise StageError(f"model.uri {uri!r}: no model there ({path}/config.json does not exist)")
        return path

    @cached_property
    def task(self):
        from tpt_stages.tasks import get_task

        soft = self.spec.select.strategy is PruneStrategy.soft_positive  # it counts every test passed
        return get_task(self.spec.task, sandbox_backend=self.sandbox_backend, count_every_test=soft)

    def problems(self, split: str) -> list[Problem]:
        return manifest.read_jsonl(self.store, layout.problems_file(split), Problem)

    def my_shard(self, items: Sequence[T]) -> list[T]:
        """This shard's share: every num_shards-th item, so shards stay balanced however items are sorted."""
        return list(items[self.shard or 0 :: self.num_shards])

    def uri(self, key: str) -> str:
        return f"{self.store.uri}/{key}"


StageFn = Callable[[Context, StageOutput], dict[str, Any]]


def stage_dir(ctx: Context, stage: layout.Stage) -> str:
    shard = ctx.shard if stage in layout.SHARDED else None
    return layout.stage_dir(ctx.round, stage, shard)


def run_stage(stage: layout.Stage, fn: StageFn, ctx: Context, *, commit: bool = True) -> dict[str, Any]:
    """Run `fn` unless its output is already committed, here or, for the same inputs, by another run
    (`reuse`); commit; report. Returns the report."""
    directory = stage_dir(ctx, stage)
    done = manifest.read(ctx.store, directory)
    if done is not None:
        report = {**done.report, "cached": True}
    elif not commit:
        # Non-main ranks of a multi-process train compute but never write.
        report = fn(ctx, None)
    else:
        shard = ctx.shard if stage in layout.SHARDED else None
        out = StageOutput(
            ctx.store,
            directory,
            stage=stage.value,
            round=ctx.round,
            shard=shard,
            num_shards=ctx.num_shards if shard is not None else None,
        )
        from tpt_stages import reuse

        key = out.fingerprint = reuse.fingerprint(ctx, stage)
        copied = reuse.copy_committed(ctx, stage, key, out) if key else None
        report = copied if copied is not None else fn(ctx, out)
        report["seconds"] = out.commit(report).seconds
        if key and copied is None:
            reuse.publish(ctx, stage, key, directory)
    emit_report(report)
    return report


def emit_report(report: dict[str, Any]) -> None:
    text = json.dumps(report, separators=(",", ":"), sort_keys=True)
    if len(text) > REPORT_LIMIT:
        raise StageError(f"stage report is {len(text)} bytes, over Kubernetes' {REPORT_LIMIT}-byte limit")
    target = os.environ.get("TPT_REPORT_FILE")
    if target:
        Path(target).write_text(text)
    elif TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        TERMINATION_LOG.write_text(text)
    print(f"report: {text}", flush=True)


def merge_shard_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report for a sharded stage: numbers add up (in nested counters such as verdicts too), everything
    else comes from the first shard."""
    merged = _merge(reports)
    if "tokens" in merged and merged.get("generate_seconds"):
        # Shards run side by side: throughput is the sum of theirs, not total tokens / summed seconds.
        merged["tokens_per_second"] = sum(r.get("tokens_per_second", 0) for r in reports)
    return merged


def _merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key not in merged:
                merged[key] = _merge([value]) if isinstance(value, dict) else value
            elif isinstance(value, dict) and isinstance(merged[key], dict):
                merged[key] = _merge([merged[key], value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] += value
    return merged


def load_run(spec_arg: str | None) -> SelfImprovementRun:
    """The run from `--spec` (a path or URI of a run document) or from `$TPT_SPEC` (the document itself)."""
    from tpt_stages import spec as specs
    from tpt_stages.storage import read_uri

    if spec_arg:
        text = read_uri(spec_arg).decode()
    elif os.environ.get("TPT_SPEC"):
        text = os.environ["TPT_SPEC"]
    else:
        raise StageError("no spec: pass --spec URI or set TPT_SPEC")
    runs = specs.loads_all(text)
    if len(runs) != 1:
        raise StageError(f"a stage runs one SelfImprovementRun, the spec holds {len(runs)}")
    return runs[0]


def open_run_store(run: SelfImprovementRun) -> Store:
    store = open_store(run.run_uri(), endpoint=run.spec.storage.endpoint)
    if not store.exists(layout.SPEC):
        from tpt_stages.spec import dumps

        store.write_text(layout.SPEC, dumps(run))
    return store
