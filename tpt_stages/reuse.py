"""Content-addressed reuse of committed stages: a think or verify stage whose inputs are identical to those of
a stage some run already committed copies that stage's output instead of computing it again.

Runs that differ only in what happens after sampling (the quick start's pruned and unpruned runs, a sweep over
`select` or `train` settings) share round 0: the same base model samples the same problems with the same seed
and settings, and the same graders judge the samples. The second run copies the first one's samples and
verdicts (seconds) instead of sampling again (minutes to hours).

A stage's **fingerprint** is a hash of everything that determines its output: the stage code's version, the
content of its input artifacts (the problems, a local base model's files, the samples a verify judges, by
their SHA-256 in the committed manifests) and the spec fields it reads. The seed is one of them: a run that
wants fresh samples of the same model sets another `think.seed`. Inputs that cannot be pinned by content
give no fingerprint, so nothing is reused: a hub model without a `revision`, an `s3://` model that is not a
run's committed checkpoint.

An index beside the runs (`<storage>[/<namespace>]/_reuse/<stage>/<fingerprint>.json`; run names cannot
contain `_`) points at the run directory that committed each fingerprint. Reuse goes through the commit
protocol: the files are copied into the stage's own directory, checked against the source manifest's hashes,
and the manifest, naming its source, is written last. A pointer whose target was deleted or does not match is
ignored and the stage computes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpt_stages import layout, manifest
from tpt_stages.layout import Stage
from tpt_stages.manifest import StageOutput
from tpt_stages.spec import PruneStrategy
from tpt_stages.storage import Store, is_local_path, local_model_path, open_store

if TYPE_CHECKING:
    from tpt_stages.stage import Context

REUSABLE = frozenset({Stage.think, Stage.verify})
INDEX = "_reuse"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _committed_files(store: Store, stage_dir: str) -> list[tuple[str, str]] | None:
    done = manifest.read(store, stage_dir)
    return None if done is None else sorted((f.path, f.sha256) for f in done.files)


def _local_dir_files(path: Path) -> list[tuple[str, str]]:
    return sorted((p.relative_to(path).as_posix(), manifest.sha256_file(p)) for p in path.rglob("*") if p.is_file())


def model_identity(ctx: Context, r: int) -> Any | None:
    """What pins the content of round `r`'s model, or None when nothing does."""
    spec = ctx.spec
    if r > 0:
        # M_r is this run's own checkpoint; its URI is recorded in every sample, so it is part of the identity.
        files = _committed_files(ctx.store, layout.model_dir(r))
        return None if files is None else [ctx.model_uri(r), files]
    uri, dtype = spec.model.uri, spec.model.dtype
    if is_local_path(uri):
        path = Path(local_model_path(uri, ctx.cache_dir / "models"))
        return [uri, dtype, _local_dir_files(path)] if path.is_dir() else None
    if uri.startswith("s3://"):
        head, _, name = uri.rstrip("/").rpartition("/")
        files = _committed_files(open_store(head, endpoint=spec.storage.endpoint), name)
        return None if files is None else [uri, dtype, files]
    # A hub id: only a pinned revision names fixed weights.
    return [uri, spec.model.revision, dtype] if spec.model.revision else None


def fingerprint(ctx: Context, stage: Stage) -> str | None:
    """The hash of everything stage `stage` of `ctx.round` (and shard) computes from, or None (no reuse)."""
    if stage not in REUSABLE:
        return None
    spec = ctx.spec
    problems = _committed_files(ctx.store, layout.stage_dir(0, Stage.prepare))
    if problems is None:
        return None
    common = {
        "stage": stage.value,
        "code": manifest.versions().get("tpt-operator"),
        "problems": problems,
        "task": spec.task.model_dump(mode="json"),
        "shard": [ctx.shard, ctx.num_shards],
    }
    if stage is Stage.think:
        model = model_identity(ctx, ctx.round)
        if model is None:
            return None
        return _digest(
            {
                **common,
                "round": ctx.round,
                "samples_train": ctx.round < spec.rounds,
                "model": model,
                "think": spec.think.model_dump(mode="json"),
                "evaluation": spec.evaluation.model_dump(mode="json"),
            }
        )
    samples = _committed_files(ctx.store, layout.stage_dir(ctx.round, Stage.think, ctx.shard))
    if samples is None:
        return None
    # softPositive makes the code grader run every test of a program (it counts them), not stop at the first
    # failure: the same verdicts, other details.
    every_test = spec.select.strategy is PruneStrategy.soft_positive
    return _digest({**common, "samples": samples, "count_every_test": every_test})


def _index(ctx: Context) -> Store:
    run_uri = ctx.run.run_uri()
    return open_store(run_uri.rpartition("/")[0], endpoint=ctx.spec.storage.endpoint)


def _pointer(stage: Stage, key: str) -> str:
    return f"{INDEX}/{stage.value}/{key}.json"


def copy_committed(ctx: Context, stage: Stage, key: str, out: StageOutput) -> dict[str, Any] | None:
    """Fill `out` from the committed stage with fingerprint `key`; returns its report (naming where it came
    from), or None when no usable committed stage has that fingerprint."""
    index = _index(ctx)
    try:
        pointer = json.loads(index.read_text(_pointer(stage, key)))
    except (FileNotFoundError, ValueError):
        return None
    source = open_store(pointer["run"], endpoint=ctx.spec.storage.endpoint)
    if source.uri == ctx.store.uri:
        return None
    done = manifest.read(source, pointer["dir"])
    if done is None or done.fingerprint != key:
        return None
    files = []
    for entry in done.files:
        data = source.read_bytes(f"{pointer['dir']}/{entry.path}")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            return None
        files.append((entry, data))
    for entry, data in files:
        out.write_bytes(entry.path, data, rows=entry.rows)
    out.seeds.update(done.seeds)
    out.reused_from = f"{source.uri}/{pointer['dir']}"
    return {**done.report, "reused_from": out.reused_from}


def publish(ctx: Context, stage: Stage, key: str, stage_dir: str) -> None:
    """Point the index at this run's committed `stage_dir` for fingerprint `key`."""
    _index(ctx).write_text(_pointer(stage, key), json.dumps({"run": ctx.store.uri, "dir": stage_dir}))
