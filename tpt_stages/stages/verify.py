"""verify: a verdict for every sample of this shard, from the task's graders.

Math is graded in process; code runs in the sandbox (one sandbox per shard). An `infra_error` (the grader or
sandbox failed, not the model) is retried, and never counted as a wrong answer. When most samples still end in
`infra_error`, the shard fails as an infrastructure failure naming the commonest cause instead of committing:
otherwise a broken sandbox would surface rounds later as "no sample survived pruning".
"""

from __future__ import annotations

from collections import Counter

from tpt_stages import layout, manifest
from tpt_stages.manifest import StageOutput
from tpt_stages.records import Grade, Problem, Sample, Verdict, Verified
from tpt_stages.stage import Context, InfrastructureError, StageError

INFRA_RETRIES = 2


def grade(task, primary: str, problems: dict, samples: list[Sample]) -> list[Verified]:
    pairs = [(problems[s.problem_id], s.completion) for s in samples]
    return [
        Verified(**s.model_dump(), verdict=g[primary].verdict, grades=g)
        for s, g in zip(samples, grade_pairs(task, primary, pairs), strict=True)
    ]


def grade_pairs(task, primary: str, pairs: list[tuple[Problem, str]]) -> list[dict[str, Grade]]:
    """Every grader's grade of every (problem, completion) pair; pairs whose `primary` verdict is an
    infra error are graded again, up to INFRA_RETRIES times."""
    grades: list[dict[str, Grade]] = [{}] * len(pairs)
    todo = list(range(len(pairs)))
    for _ in range(1 + INFRA_RETRIES):
        retry = []
        for i, g in zip(todo, task.grade([pairs[i] for i in todo]), strict=True):
            grades[i] = g
            if g[primary].verdict is Verdict.infra_error:
                retry.append(i)
        todo = retry
        if not todo:
            break
    return grades


def check_infrastructure(rows: list[Verified], primary: str) -> None:
    """Raise InfrastructureError when most of `rows` are infra errors, naming their commonest cause."""
    causes = Counter(r.grades[primary].detail or "no detail" for r in rows if r.verdict is Verdict.infra_error)
    failed = sum(causes.values())
    if failed * 2 > len(rows):
        cause, count = causes.most_common(1)[0]
        raise InfrastructureError(
            f"{failed} of {len(rows)} samples got infra_error after {INFRA_RETRIES} retries (the grader or the "
            f"sandbox failed, not the model); the commonest cause ({count}x): {' '.join(cause.split())[:400]}"
        )


def run(ctx: Context, out: StageOutput) -> dict:
    think_dir = layout.stage_dir(ctx.round, layout.Stage.think, ctx.shard)
    think = manifest.read(ctx.store, think_dir)
    if think is None:
        raise StageError(f"think shard {ctx.shard} of round {ctx.round} is not committed ({think_dir})")
    primary = ctx.spec.task.primary_grader
    # Everything is read before the first program runs and written after the last one is dead: in the
    # cluster's sandbox pod, programs share the workdir's uid, so they must find neither the expected outputs
    # nor a half-written result to tamper with.
    inputs = [
        (entry.path, manifest.read_jsonl(ctx.store, f"{think_dir}/{entry.path}", Sample),
         {p.id: p for p in ctx.problems(entry.path.removesuffix(".jsonl"))})
        for entry in think.files
    ]  # fmt: skip
    if ctx.scrub_inputs:
        scrub(ctx)
    graded = [(path, grade(ctx.task, primary, problems, samples)) for path, samples, problems in inputs]
    check_infrastructure([r for _, rows in graded for r in rows], primary)
    verdicts: Counter = Counter()
    for path, rows in graded:
        out.write_jsonl(path, rows)
        verdicts.update(r.verdict.value for r in rows)
    report: dict = {"samples": sum(len(rows) for _, rows in graded)}
    backend = getattr(ctx.task, "backend_used", None)
    if backend:
        report["sandbox"] = backend
    references = getattr(ctx.task, "reference_limits", None)
    if references:  # time limits from reference solutions (task.referenceTimeMultiple)
        timed = sum(limit is not None for limit in references.values())
        report["reference_limits"] = {"timed": timed, "failed": len(references) - timed}
    report["verdicts"] = dict(sorted(verdicts.items()))
    return report


# In a cluster the code sandbox pod splits verify in three so that no process that can see object-store
# credentials ever shares a container with model-written programs:
#   fetch  (init container, credentials)     remote store -> workdir
#   grade  (sandbox container, none)         verify against the workdir store, then `_DONE`
#   upload (native sidecar, credentials)     after `_DONE`: workdir -> remote store, manifest last, `_UPLOADED`
DONE, UPLOADED = "_DONE", "_UPLOADED"


def _inputs(ctx: Context, store) -> list[str]:
    keys = [layout.SPEC, layout.problems_file("train"), layout.problems_file("test")]
    return keys + store.list(layout.stage_dir(ctx.round, layout.Stage.think, ctx.shard))


def scrub(ctx: Context) -> None:
    """Delete the fetched inputs (problems with their expected outputs, samples) from the sandbox's workdir."""
    ctx.store.delete_prefix(layout.stage_dir(ctx.round, layout.Stage.prepare))
    ctx.store.delete_prefix(layout.stage_dir(ctx.round, layout.Stage.think, ctx.shard))


def fetch(ctx: Context, local) -> None:
    committed = layout.manifest(ctx.round, layout.Stage.verify, ctx.shard)
    if ctx.store.exists(committed):
        # A pod retried after its upload committed: with the manifest in the workdir, grade reports the
        # committed shard and runs nothing, and upload leaves it be.
        local.write_bytes(committed, ctx.store.read_bytes(committed))
        return
    keys = _inputs(ctx, ctx.store)
    for key in keys:
        if ctx.store.exists(key):
            local.write_bytes(key, ctx.store.read_bytes(key))


def upload(ctx: Context, local) -> None:
    if ctx.store.exists(layout.manifest(ctx.round, layout.Stage.verify, ctx.shard)):
        return  # committed already (see fetch): a commit is never rewritten
    d = layout.stage_dir(ctx.round, layout.Stage.verify, ctx.shard)
    keys = local.list(d)
    for key in sorted(keys, key=lambda k: k.endswith(layout.MANIFEST)):  # the manifest last: it commits
        ctx.store.write_bytes(key, local.read_bytes(key))
