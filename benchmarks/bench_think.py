"""Think benchmark: what the think stage costs over calling vLLM directly. Completion tokens per second of

- raw vLLM: `LLM(...)` and one `LLM.generate` call with `SamplingParams(n=...)` on the same prompt token ids,
  same model, dtype, sampling settings and limits (max tokens, KV cache size), no project code in the loop,
  with vLLM's defaults otherwise, and with the settings the stage's engine uses;
- the think stage itself: `python -m tpt_stages think` on a prepared run whose test split holds the same
  problems (prompts in, samples committed to storage), timed from the engine being ready to the commit;
- transformers' batched `generate` (the engine for machines without vLLM), for scale.

    .venv/bin/python benchmarks/bench_think.py --model tpt-runs/models/arith-tiny [--problems 500 --n 4]
    python benchmarks/bench_think.py --model /tmp/llama-1b --rows 2,3 --engine transformers --dtype bfloat16

`--engine transformers` makes the stage row sample with transformers (a GPU machine without vLLM; rows 2,3 then
need no vLLM at all); `--dtype` is the model's dtype in every row (float32 suits CPUs, bfloat16 GPUs).

Every row runs in a fresh process of its own (vLLM keeps memory and threads until its process ends), one after
the other; load time is reported apart from sampling time, which is what the ratios compare. The stage's
report splits its time into engine load, sampling (`LLM.generate` and decoding) and writing the samples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

KV_CACHE_BYTES = 2 << 30  # the stage's CPU default (engines.DEFAULT_CPU_KV_CACHE_BYTES), given to raw vLLM too
TEMPERATURE, TOP_P, SEED = 0.7, 1.0, 0


def run_doc(model: str, storage: str, problems: int, n: int, max_tokens: int, engine: str, dtype: str) -> dict:
    """A run whose round-0 think samples exactly the benchmark's prompts: `rounds: 0` samples the test split
    only (evaluation settings), so the stage does the same work as the raw calls."""
    return {
        "apiVersion": "tpt.dev/v1alpha1",
        "kind": "SelfImprovementRun",
        "metadata": {"name": "bench-think"},
        "spec": {
            "model": {"uri": model, "dtype": dtype},
            "task": {"kind": "arith", "generator": {"trainProblems": 1, "testProblems": problems, "seed": 99}},
            "rounds": 0,
            "think": {"maxTokens": max_tokens, "topP": TOP_P, "seed": SEED, "engine": engine},
            "evaluation": {"samples": n, "temperature": TEMPERATURE},
            "storage": {"uri": storage},
        },
    }


def prompt_ids(model: str, problems_file: Path) -> list[list[int]]:
    """The prompts as token ids, rendered the way TRL and the stage render them (before any timing)."""
    from transformers import AutoTokenizer

    from tpt_stages.records import Problem
    from tpt_stages.spec import Task, TaskKind
    from tpt_stages.tasks import get_task

    task = get_task(Task(kind=TaskKind.arith))
    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = [Problem.model_validate_json(line) for line in problems_file.read_text().splitlines() if line]
    return [
        tokenizer.apply_chat_template(task.messages(p), add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        for p in problems
    ]


def measure_raw(model: str, prompts: list[list[int]], n: int, max_tokens: int, dtype: str, engine_kwargs: dict) -> dict:
    from vllm import LLM, SamplingParams

    # decode_after: vLLM returns token ids only, the texts are decoded in one batch at the end (timed too).
    decode_after = engine_kwargs.pop("decode_after", False)
    t0 = time.perf_counter()
    llm = LLM(model=model, dtype=dtype, seed=SEED, kv_cache_memory_bytes=KV_CACHE_BYTES, **engine_kwargs)
    load = time.perf_counter() - t0
    params = SamplingParams(
        n=n, temperature=TEMPERATURE, top_p=TOP_P, max_tokens=max_tokens, detokenize=not decode_after
    )
    t1 = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    if decode_after:
        texts = llm.get_tokenizer().batch_decode(
            [o.token_ids for out in outputs for o in out.outputs], skip_special_tokens=True
        )
        assert len(texts) == len(prompts) * n
    seconds = time.perf_counter() - t1
    tokens = sum(len(o.token_ids) for out in outputs for o in out.outputs)
    return {"load_s": load, "sample_s": seconds, "tokens": tokens}


def measure_transformers(model: str, prompts_file: Path, n: int, max_tokens: int, dtype: str) -> dict:
    from tpt_stages.engines import SamplingConfig, open_engine
    from tpt_stages.records import Problem
    from tpt_stages.spec import Task, TaskKind
    from tpt_stages.tasks import get_task

    task = get_task(Task(kind=TaskKind.arith))
    problems = [Problem.model_validate_json(line) for line in prompts_file.read_text().splitlines() if line]
    t0 = time.perf_counter()
    engine = open_engine("transformers", model, dtype=dtype, seed=SEED)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    gens = engine.generate(
        [task.messages(p) for p in problems], SamplingConfig(n, TEMPERATURE, TOP_P, max_tokens, SEED)
    )
    seconds = time.perf_counter() - t1
    return {"load_s": load, "sample_s": seconds, "tokens": sum(sum(g.completion_tokens) for g in gens)}


def measure_stage(spec: Path, run_dir: Path, profile: str | None) -> dict:
    """The real stage in its own process, as `tpt run` starts it; its committed manifest says what it did.
    With `profile`, the process runs under cProfile (vLLM's engine core runs in it on the CPU) and writes
    its statistics there: it then runs slower, so only its shares are meaningful."""
    from tpt_stages import layout, manifest
    from tpt_stages.storage import open_store

    report_file = spec.with_suffix(".report.json")
    env = {**os.environ, "TPT_REPORT_FILE": str(report_file)}
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, *profiler, "-m", "tpt_stages", "think", "--round", "0", "--spec", str(spec)],
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    done = manifest.read(open_store(f"file://{run_dir}"), layout.stage_dir(0, layout.Stage.think, 0))
    report = done.report
    # From the engine being ready to the manifest written: sampling, decoding, rows, the JSONL upload, commit.
    sample_to_commit = done.seconds - report["load_seconds"]
    return {
        "load_s": report["load_seconds"],
        "sample_s": sample_to_commit,
        "tokens": report["tokens"],
        "process_wall_s": wall,
        "profile": {k: report[k] for k in ("load_seconds", "generate_seconds", "write_seconds") if k in report}
        | {"commit_seconds": round(done.seconds, 2)},
    }


def child(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir)
    problems_file = workdir / "runs" / "bench-think" / "problems" / "test.jsonl"
    kind = args.row
    if kind == "stage":
        return measure_stage(workdir / "run.yaml", workdir / "runs" / "bench-think", args.profile)
    if kind == "transformers":
        return measure_transformers(args.model, problems_file, args.n, args.max_tokens, args.dtype)
    prompts = prompt_ids(args.model, problems_file)
    engine_kwargs = json.loads(args.engine_kwargs)
    if engine_kwargs.pop("in_process", False):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        engine_kwargs["distributed_executor_backend"] = "uni"
    return measure_raw(args.model, prompts, args.n, args.max_tokens, args.dtype, engine_kwargs)


# (label, row kind, vLLM keyword arguments for raw rows)
ROWS = [
    ("raw vLLM, defaults", "raw", {}),
    (
        "raw vLLM, the engine's settings (in-process, eager, 32-token KV blocks)",
        "raw",
        {"in_process": True, "enforce_eager": True, "block_size": 32},
    ),
    ("think stage (prompts in, samples committed)", "stage", {}),
    ("transformers `generate` (TransformersEngine)", "transformers", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--rows", default="", help="comma-separated row numbers to run (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the rows; each row reports its best")
    ap.add_argument("--extra", action="append", default=[], help="another raw row: JSON of LLM(...) kwargs")
    ap.add_argument("--profile", help="run the stage row under cProfile, statistics to this file")
    ap.add_argument("--engine", choices=["vllm", "transformers"], default="vllm", help="the stage row's engine")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure one row in this process
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--engine-kwargs", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.model = str(Path(args.model).resolve())
    if args.row:
        print("RESULT " + json.dumps(child(args)))
        return

    rows = [ROWS[int(i)] for i in args.rows.split(",")] if args.rows else list(ROWS)
    rows += [(f"raw vLLM, {x}", "raw", json.loads(x)) for x in args.extra]
    with tempfile.TemporaryDirectory(prefix="bench-think-") as tmp:
        work = Path(tmp)
        spec = work / "run.yaml"
        spec.write_text(
            yaml.safe_dump(
                run_doc(
                    args.model, f"file://{work}/runs", args.problems, args.n, args.max_tokens, args.engine, args.dtype
                )
            )
        )
        subprocess.run(
            [sys.executable, "-m", "tpt_stages", "prepare", "--round", "0", "--spec", str(spec)],
            check=True,
            capture_output=True,
        )
        best: dict[str, dict] = {}
        # Rows in turn, `--repeat` times over: load from elsewhere on a shared machine then falls on every row
        # alike, and each row keeps its fastest pass.
        for _ in range(args.repeat):
            for label, kind, kwargs in rows:
                cmd = [sys.executable, __file__, "--row", kind, "--workdir", tmp, "--model", args.model,
                       "--n", str(args.n), "--max-tokens", str(args.max_tokens), "--engine-kwargs", json.dumps(kwargs),
                       "--dtype", args.dtype,
                       *(["--profile", str(Path(args.profile).resolve())] if args.profile else [])]  # fmt: skip
                if kind == "stage":  # a fresh run directory: the stage must compute, not find its commit
                    shutil.rmtree(work / "runs" / "bench-think" / "round-00", ignore_errors=True)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{label}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
                r = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
                r |= {"row": label, "tok_per_s": r["tokens"] / r["sample_s"], "load_average": os.getloadavg()[0]}
                print(
                    f"{label}: {r['tokens']} tokens in {r['sample_s']:.1f} s after {r['load_s']:.1f} s load", flush=True
                )
                if label not in best or r["tok_per_s"] > best[label]["tok_per_s"]:
                    best[label] = r
        results = [best[label] for label, _, _ in rows]

    raw = next((r["tok_per_s"] for r in results if r["row"] == ROWS[0][0]), None)
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"{args.problems} prompts x n={args.n}, T={TEMPERATURE}, max {args.max_tokens} tokens"
    )
    print("| row | load s | sampling s | completion tokens | tokens/s | vs raw vLLM defaults |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['tok_per_s'] / raw:.2f}x" if raw else "-"
        print(
            f"| {r['row']} | {r['load_s']:.1f} | {r['sample_s']:.1f} | {r['tokens']:,} | {r['tok_per_s']:,.0f} | "
            f"{ratio} |"
        )
    print(json.dumps(results))
    if args.json:
        meta = {"machine": platform.machine(), "cores": os.cpu_count(), "problems": args.problems, "n": args.n,
                "max_tokens": args.max_tokens, "temperature": TEMPERATURE, "engine": args.engine, "dtype": args.dtype}  # fmt: skip
        Path(args.json).write_text(json.dumps({**meta, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
