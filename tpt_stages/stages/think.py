"""think: the round's model samples its shard of the test problems (evaluation: k samples at the evaluation
temperature) and, unless this is the last round, of the train problems (the next round's candidates).

One engine load per shard serves both, so each checkpoint is loaded into vLLM once per round.
"""

from __future__ import annotations

import time

from tpt_stages.engines import SamplingConfig, open_engine
from tpt_stages.manifest import StageOutput
from tpt_stages.records import Problem, Sample, prompt_hash
from tpt_stages.stage import Context


def sample(engine, task, problems: list[Problem], split: str, cfg: SamplingConfig, model_uri: str) -> list[Sample]:
    conversations = [task.messages(p) for p in problems]
    generations = engine.generate(conversations, cfg)
    rows = []
    for problem, conversation, gen in zip(problems, conversations, generations, strict=True):
        h = prompt_hash(conversation)
        for i, (text, tokens, finish) in enumerate(
            zip(gen.completions, gen.completion_tokens, gen.finish_reasons, strict=True)
        ):
            rows.append(
                Sample(
                    problem_id=problem.id,
                    split=split,
                    sample_index=i,
                    prompt_hash=h,
                    completion=text,
                    prompt_tokens=gen.prompt_tokens,
                    completion_tokens=tokens,
                    finish_reason=finish,
                    model_uri=model_uri,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    max_tokens=cfg.max_tokens,
                    seed=cfg.seed,
                )
            )
    return rows


def run(ctx: Context, out: StageOutput) -> dict:
    spec = ctx.spec
    seed = spec.think.seed + 1000 * ctx.round + (ctx.shard or 0)
    out.seeds["sampling"] = seed
    model_uri = ctx.model_uri(ctx.round)
    t0 = time.monotonic()
    engine = open_engine(spec.think.engine.value, ctx.local_model(ctx.round), dtype=spec.model.dtype, seed=seed)
    load_seconds = time.monotonic() - t0

    plan = [
        (
            "test",
            SamplingConfig(
                spec.evaluation.samples, spec.evaluation.temperature, spec.think.top_p, spec.think.max_tokens, seed
            ),
        )
    ]
    if ctx.round < spec.rounds:
        plan.append(
            (
                "train",
                SamplingConfig(
                    spec.think.samples_per_problem,
                    spec.think.temperature,
                    spec.think.top_p,
                    spec.think.max_tokens,
                    seed,
                ),
            )
        )
    tokens = samples = 0
    generate_seconds = write_seconds = 0.0
    for split, cfg in plan:
        t1 = time.monotonic()
        rows = sample(engine, ctx.task, ctx.my_shard(ctx.problems(split)), split, cfg, model_uri)
        t2 = time.monotonic()
        out.write_jsonl(f"{split}.jsonl", rows)
        generate_seconds += t2 - t1
        write_seconds += time.monotonic() - t2
        tokens += sum(r.completion_tokens for r in rows)
        samples += len(rows)
    return {
        "model_uri": model_uri,
        "engine": spec.think.engine.value,
        "samples": samples,
        "tokens": tokens,
        "load_seconds": round(load_seconds, 2),
        "generate_seconds": round(generate_seconds, 2),
        "write_seconds": round(write_seconds, 2),
        "tokens_per_second": round(tokens / generate_seconds, 1) if generate_seconds else 0.0,
    }
