"""train: SFT of the round's model on the selected examples; the result is the next round's model.

The examples carry the conversation exactly as think rendered it, so the training prompt is the generation
prompt. Under `accelerate launch` every rank trains and only the main rank uploads and commits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tpt_stages import layout, manifest
from tpt_stages.manifest import StageOutput
from tpt_stages.records import Example, prompt_hash
from tpt_stages.stage import Context, StageError


def guard_contamination(ctx: Context, examples: list[Example]) -> None:
    test = ctx.problems("test")
    test_ids = {p.id for p in test}
    test_hashes = {prompt_hash(ctx.task.messages(p)) for p in test}
    leaked = [e.problem_id for e in examples if e.problem_id in test_ids or e.prompt_hash in test_hashes]
    if leaked:
        raise StageError(f"refusing to train: {len(leaked)} examples are test problems (e.g. {leaked[:3]})")


def run(ctx: Context, out: StageOutput | None) -> dict:
    from tpt_stages.trainer import train_sft

    examples = manifest.read_jsonl(ctx.store, layout.select_file(ctx.round), Example)
    if not examples:
        raise StageError(f"round {ctx.round} selected no examples to train on")
    guard_contamination(ctx, examples)
    with tempfile.TemporaryDirectory(prefix="tpt-train-") as tmp:
        stats = train_sft(ctx.local_model(ctx.round), examples, ctx.spec.train, tmp)
        if out is not None:
            out.seeds["train"] = ctx.spec.train.seed
            out.upload_dir(Path(tmp))
    model_uri = ctx.uri(layout.model_dir(ctx.round + 1))
    keep = ("examples", "steps", "tokens", "tokens_per_second", "train_loss", "device", "world_size")
    return {"model_uri": model_uri, **{k: stats[k] for k in keep if k in stats}}
