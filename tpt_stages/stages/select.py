"""select: prune the round's train samples and sample f examples for the next round's SFT."""

from __future__ import annotations

from tpt_stages.manifest import StageOutput
from tpt_stages.records import Example
from tpt_stages.selection import select
from tpt_stages.stage import Context
from tpt_stages.stages.score import read_verified


def run(ctx: Context, out: StageOutput) -> dict:
    spec = ctx.spec
    problems = {p.id: p for p in ctx.problems("train")}
    chosen = select(
        read_verified(ctx, "train"), spec.select.strategy, spec.examples_per_round, spec.select.seed, ctx.round
    )
    examples = [
        Example(
            problem_id=s.problem_id,
            prompt=ctx.task.messages(problems[s.problem_id]),
            completion=[{"role": "assistant", "content": s.completion}],
            prompt_hash=s.prompt_hash,
            source_round=ctx.round,
            sample_index=s.sample_index,
        )
        for s in chosen.chosen
    ]
    out.seeds["select"] = spec.select.seed
    out.write_jsonl("train.jsonl", examples)
    return {
        "selected": len(examples),
        "accepted": chosen.accepted,
        "unique": chosen.unique,
        "requested": spec.examples_per_round,
        "strategy": spec.select.strategy.value,
    }
