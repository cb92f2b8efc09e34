"""Train benchmark: SFT throughput of the train stage (TRL's SFTTrainer, `tpt_stages.trainer.train_sft`)
against a bare PyTorch loop over the very batches the stage trains on (drawn from the stage's own trainer: same
examples, order, padding and completion-only labels; same AdamW, learning rate and gradient clipping), and both
against the hardware bound: model FLOPs utilisation, MFU = 6 x parameters x tokens per second / peak (tokens
without padding; attention's own FLOPs left out, small at these lengths).

    .venv/bin/python benchmarks/bench_train.py --model tpt-runs/models/arith-tiny [--examples 1000]
    python benchmarks/bench_train.py --model /tmp/llama-1b --examples 8192 --batch-size 128 --peak-tflops 989

The peak is `--peak-tflops` where given (a GPU's datasheet figure: the H200's dense bf16 peak is 989 TFLOP/s),
else the best rate of a large matrix product measured here (on a CPU: float32, and then no MFU claim, only the
two loops against each other). A GPU trains in bfloat16 (the stage's setting); the matrix product is measured in
the same dtype either way and reported beside the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


def matmul_flops(device: str, dtype, size: int, repeat: int = 10) -> float:
    """Best FLOP rate of a size^3 matrix product on `device` (after a warm-up)."""
    import torch

    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def examples(n: int):
    from tpt_stages.records import Example, prompt_hash
    from tpt_stages.spec import ArithGenerator, Task, TaskKind
    from tpt_stages.tasks import arith, get_task

    task = get_task(Task(kind=TaskKind.arith))
    rows = []
    for p in arith.generate(ArithGenerator(train_problems=n, seed=5), "train"):
        prompt = task.messages(p)
        rows.append(
            Example(
                problem_id=p.id,
                prompt=prompt,
                completion=[{"role": "assistant", "content": task.reference_completion(p)}],
                prompt_hash=prompt_hash(prompt),
                source_round=0,
                sample_index=0,
            )
        )
    return rows


def bare_loop(model_dir: str, batches: list[dict], cfg) -> tuple[int, float]:
    """The reference: the stage's batches, already on the device, through forward/backward/clip/step with
    nothing else around it. Returns (tokens without padding, seconds)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16 if device == "cuda" else torch.float32
    ).to(device)
    keys = ("input_ids", "attention_mask", "labels")
    batches = [{k: b[k].to(device) for k in keys} for b in batches]
    tokens = int(sum(b["attention_mask"].sum() for b in batches))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model.train()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for batch in batches:
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the Trainer's default max_grad_norm
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - t0


def main() -> None:
    import torch

    from tpt_stages.spec import Train
    from tpt_stages.trainer import sft_trainer, train_sft

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--peak-tflops", type=float, help="the MFU denominator (default: a matrix product measured here)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    rows = examples(args.examples)
    cfg = Train(learning_rate=2e-4, batch_size=args.batch_size, max_length=args.max_length)
    with tempfile.TemporaryDirectory() as out:
        probe = sft_trainer(args.model, rows, cfg, out)
        # A fresh trainer's dataloader yields exactly the batches its train() trains on (checked with a forward
        # hook on TRL 1.16): the bare loop gets the stage's own batches.
        batches = [{k: v.cpu() for k, v in b.items()} for b in probe.get_train_dataloader()]
        params = probe.model.num_parameters()
        del probe
        stats = train_sft(args.model, rows, cfg, out)
    if on_gpu:
        torch.cuda.empty_cache()
    bare_tokens, bare_s = bare_loop(args.model, batches, cfg)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    measured = matmul_flops(device, dtype, 8192 if on_gpu else 2048)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else measured
    peak_source = f"{args.peak_tflops:g} TFLOP/s given" if args.peak_tflops else "measured matrix product"
    bare_tps = bare_tokens / bare_s
    result = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "parameters": params,
        "examples": args.examples,
        "batch_size": args.batch_size,
        "steps": len(batches),
        "matmul_tflops": measured / 1e12,
        "peak_tflops": peak / 1e12,
        "peak_source": peak_source,
        "rows": [
            {"row": "train stage (TRL SFTTrainer)", "seconds": stats["seconds"], "tokens": stats["tokens"],
             "tokens_per_second": stats["tokens_per_second"], "train_loss": stats["train_loss"]},
            {"row": "bare PyTorch loop", "seconds": bare_s, "tokens": bare_tokens, "tokens_per_second": bare_tps},
        ],
    }  # fmt: skip
    for r in result["rows"]:
        r["mfu"] = 6 * params * r["tokens_per_second"] / peak
        r["vs_bare"] = r["tokens_per_second"] / bare_tps
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {result['device']}, torch {torch.__version__}; "
        f"{args.examples} examples, batch {args.batch_size}, {len(batches)} steps, {params / 1e6:.2f}M parameters, "
        f"{result['dtype']}; matrix product {measured / 1e12:.2f} TFLOP/s; MFU against {peak / 1e12:.2f} TFLOP/s "
        f"({peak_source})"
    )
    print("| trainer | seconds | tokens | tokens/s | vs bare loop | MFU |")
    print("|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['row']} | {r['seconds']:.1f} | {r['tokens']} | {r['tokens_per_second']:.0f} | "
            f"{r['vs_bare']:.2f}x | {r['mfu']:.1%} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
