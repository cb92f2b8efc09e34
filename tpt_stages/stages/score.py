"""score: the round model's test metrics (Pass@1, Pass@k, Correct@k per grader) and the pruning funnel of
its train samples, from every verify shard."""

from __future__ import annotations

from tpt_stages import layout, manifest
from tpt_stages.manifest import StageOutput
from tpt_stages.metrics import disagreements, grader_metrics
from tpt_stages.records import Verdict, Verified
from tpt_stages.selection import select
from tpt_stages.stage import Context, StageError


def read_verified(ctx: Context, split: str) -> list[Verified]:
    rows: list[Verified] = []
    for shard in range(ctx.spec.think.shards):
        d = layout.stage_dir(ctx.round, layout.Stage.verify, shard)
        if manifest.read(ctx.store, d) is None:
            raise StageError(f"verify shard {shard} of round {ctx.round} is not committed ({d})")
        if ctx.store.exists(f"{d}/{split}.jsonl"):
            rows += manifest.read_jsonl(ctx.store, f"{d}/{split}.jsonl", Verified)
    return rows


def funnel(ctx: Context, rows: list[Verified]) -> dict[str, int]:
    spec = ctx.spec
    chosen = select(rows, spec.select.strategy, spec.examples_per_round, spec.select.seed, ctx.round)
    return {
        "problems": len({r.problem_id for r in rows}),
        "generated": len(rows),
        "answered": sum(r.verdict not in (Verdict.no_answer, Verdict.infra_error) for r in rows),
        "correct": sum(r.verdict is Verdict.correct for r in rows),
        "unique": chosen.unique,
        "selected": len(chosen.chosen),
    }


def run(ctx: Context, out: StageOutput) -> dict:
    graders = ctx.task.graders
    test = read_verified(ctx, "test")
    train = read_verified(ctx, "train") if ctx.round < ctx.spec.rounds else []
    report = {
        "primary": ctx.spec.task.primary_grader,
        "k": ctx.spec.evaluation.samples,
        "test_problems": len({r.problem_id for r in test}),
        "graders": grader_metrics(test, graders, ctx.spec.evaluation.samples),
        "disagreements": disagreements(test + train, graders),
        "infra_errors": sum(r.verdict is Verdict.infra_error for r in test + train),
    }
    if train:
        report["funnel"] = funnel(ctx, train)
    out.write_json("score.json", report)
    return report
