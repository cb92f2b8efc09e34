"""Think benchmark: sampling throughput (completion tokens per second) of the engine the stages use, vLLM,
against transformers' batched `generate`, on the same model, prompts and sampling settings.

    .venv/bin/python benchmarks/bench_think.py --model tpt-runs/models/arith-tiny [--problems 500 --n 4]

Each engine runs in a fresh process of its own (`--engine X` runs one and prints a JSON line): vLLM starts
workers and keeps memory until its process ends, and under `multiprocessing` it hangs. The load time is
reported apart from the generation time, which is what the ratio compares.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def _measure(kind: str, model: str, problems: int, n: int, max_tokens: int) -> dict:
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
    return {"engine": kind, "load_s": load, "generate_s": seconds, "tokens": tokens, "tok_per_s": tokens / seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--engine", choices=["transformers", "vllm"], help="measure this engine alone")
    args = ap.parse_args()
    ap_engine = args.engine
    if ap_engine:
        print("RESULT " + json.dumps(_measure(ap_engine, args.model, args.problems, args.n, args.max_tokens)))
        return
    rows = []
    for kind in ("transformers", "vllm"):
        cmd = [sys.executable, __file__, "--engine", kind, "--model", args.model, "--problems", str(args.problems),
               "--n", str(args.n), "--max-tokens", str(args.max_tokens)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:]))
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
