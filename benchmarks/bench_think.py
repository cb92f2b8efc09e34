"""Think benchmark: sampling throughput (completion tokens per second) of the engine the stages use, vLLM,
against transformers' batched `generate`, on the same model, prompts and sampling settings.

    .venv/bin/python benchmarks/bench_think.py --model tpt-runs/models/arith-tiny [--problems 500 --n 4]

Each engine runs in a process of its own (vLLM starts workers and keeps memory until its process ends); the
load time is reported apart from the generation time, which is what the ratio compares.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time


def _measure(kind: str, model: str, problems: int, n: int, max_tokens: int, queue) -> None:
    from tpt_stages.engines import SamplingConfig, open_engine
    from tpt_stages.spec import ArithGenerator, Task, TaskKind
    from tpt_stages.tasks import arith, get_task

    task = get_task(Task(kind=TaskKind.arith))
    conversations = [task.messages(p) for p in arith.generate(ArithGenerator(test_problems=problems, seed=99), "test")]
    t0 = time.perf_counter()
    engine = open_engine(kind, model, dtype="float32", seed=0)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    gens = engine.generate(
        conversations, SamplingConfig(n=n, temperature=0.8, top_p=1.0, max_tokens=max_tokens, seed=0)
    )
    seconds = time.perf_counter() - t1
    tokens = sum(sum(g.completion_tokens) for g in gens)
    queue.put({"engine": kind, "load_s": load, "generate_s": seconds, "tokens": tokens, "tok_per_s": tokens / seconds})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=160)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for kind in ("transformers", "vllm"):
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(kind, args.model, args.problems, args.n, args.max_tokens, q))
        p.start()
        rows.append(q.get())
        p.join()
    base = rows[0]["tok_per_s"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.problems} prompts x {args.n} samples, "
        f"max {args.max_tokens} tokens"
    )
    print("| engine | load s | generate s | completion tokens | tokens/s | vs transformers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['load_s']:.1f} | {r['generate_s']:.1f} | {r['tokens']} | "
            f"{r['tok_per_s']:.0f} | {r['tok_per_s'] / base:.2f}x |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
