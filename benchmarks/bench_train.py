"""Train benchmark: SFT throughput of the train stage (TRL's SFTTrainer, `tpt_stages.trainer.train_sft`)
against a bare PyTorch loop doing the same work (same model, examples, batch size, completion-only loss), and
both against the hardware bound: the FLOP rate of a large matmul on this machine (model FLOPs utilisation,
MFU = 6 x parameters x tokens per second / peak).

    .venv/bin/python benchmarks/bench_train.py --model tpt-runs/models/arith-tiny [--examples 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time


def peak_flops(size: int = 2048, repeat: int = 5) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
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


def bare_loop(model_dir: str, rows, batch_size: int, lr: float, max_length: int) -> tuple[int, float]:
    """The reference: tokenise once, then forward/backward/step with nothing else around it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    seqs = []
    for e in rows:
        prompt = tok.apply_chat_template(e.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        full = tok.apply_chat_template(e.prompt + e.completion, tokenize=True, return_dict=True)["input_ids"]
        seqs.append((full[:max_length], len(prompt)))
    random.Random(0).shuffle(seqs)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    pad = tok.pad_token_id or 0
    tokens = sum(len(s) for s, _ in seqs)
    model.train()
    t0 = time.perf_counter()
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s, _ in chunk])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in chunk])
        labels = ids.clone()
        for row, (s, plen) in enumerate(chunk):
            labels[row, :plen] = -100
            labels[row, len(s) :] = -100
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tokens, time.perf_counter() - t0


def main() -> None:
    import torch

    from tpt_stages.spec import Train
    from tpt_stages.trainer import train_sft

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    rows = examples(args.examples)
    cfg = Train(learning_rate=2e-4, batch_size=args.batch_size, max_length=256)
    params = sum(
        p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(args.model).parameters()
    )
    peak = peak_flops()
    with tempfile.TemporaryDirectory() as out:
        stats = train_sft(args.model, rows, cfg, out)
    bare_tokens, bare_s = bare_loop(args.model, rows, args.batch_size, cfg.learning_rate, cfg.max_length)
    bare_tps = bare_tokens / bare_s
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {args.examples} examples, batch {args.batch_size}, "
        f"{params / 1e6:.2f}M parameters; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print("| trainer | seconds | tokens | tokens/s | vs bare loop | MFU |")
    print("|---|---|---|---|---|---|")
    for name, tps, secs, toks in (
        ("TRL SFTTrainer (train stage)", stats["tokens_per_second"], stats["seconds"], stats["tokens"]),
        ("bare PyTorch loop", bare_tps, bare_s, bare_tokens),
    ):
        print(f"| {name} | {secs:.1f} | {toks} | {tps:.0f} | {tps / bare_tps:.2f}x | {6 * params * tps / peak:.1%} |")


if __name__ == "__main__":
    main()
