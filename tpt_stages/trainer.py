"""Supervised fine-tuning of a round's model on its selected examples, with TRL's SFTTrainer.

The paper's recipe (§3.3): one epoch, AdamW, linear schedule with 10% warm-up, loss on the completion only.
Examples are conversational prompt/completion pairs, so TRL applies the model's chat template exactly as the
think stage did when it sampled them (see `engines.render_prompts`), and masks the prompt from the loss.

Under `accelerate launch` (several GPUs or nodes) the same code runs on every rank; the Trainer handles the
data split and the gradient all-reduce, and the caller uploads from rank 0 only. TRL and torch are imported
lazily: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tpt_stages.records import Example
from tpt_stages.spec import Train

log = logging.getLogger(__name__)


def sft_config_kwargs(cfg: Train, out_dir: str, *, on_gpu: bool, bf16_ok: bool) -> dict[str, Any]:
    """The SFTConfig arguments for a spec's `train` section: the one place the paper's recipe meets TRL."""
    return {
        "output_dir": out_dir,
        "num_train_epochs": cfg.epochs,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "linear",
        "warmup_steps": cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps (transformers ≥4.57)
        "weight_decay": cfg.weight_decay,
        "optim": "adamw_torch",
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "max_length": cfg.max_length,
        "completion_only_loss": True,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": on_gpu and bf16_ok,
        "use_cpu": not on_gpu,
        # Checkpoints mid-epoch would cost more than redoing one epoch of a round; the model is saved once.
        "save_strategy": "no",
        "logging_steps": 10,
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def sft_trainer(model_dir: str, examples: Sequence[Example], cfg: Train, out_dir: str):
    """The SFTTrainer of the train stage, ready to train: the model in bfloat16 on GPUs (float32 on CPUs), the
    examples tokenised. benchmarks/bench_train.py draws its reference loop's batches from this trainer."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        # One process owns the CPU; torch's default thread count already matches the cores it may use.
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if on_gpu else torch.float32)
    args = SFTConfig(
        **sft_config_kwargs(cfg, out_dir, on_gpu=on_gpu, bf16_ok=on_gpu and torch.cuda.is_bf16_supported())
    )
    data = Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)


def train_sft(model_dir: str, examples: Sequence[Example], cfg: Train, out_dir: str) -> dict[str, Any]:
    """Fine-tune `model_dir` on `examples`, save the result (model + tokenizer, HF format) into `out_dir`, and
    return what the train report records."""
    trainer = sft_trainer(model_dir, examples, cfg, out_dir)
    tokenizer = trainer.processing_class
    on_gpu = trainer.args.device.type == "cuda"
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])

    t0 = time.monotonic()
    result = trainer.train()
    seconds = time.monotonic() - t0
    trainer.save_model(out_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out_dir)
        for leftover in Path(out_dir).glob("checkpoint-*"):
            log.warning("unexpected checkpoint directory %s", leftover)
    world = trainer.args.world_size
    return {
        "examples": len(examples),
        "steps": result.global_step,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else 0.0,
        "train_loss": round(result.training_loss, 4) if math.isfinite(result.training_loss) else None,
        "device": "cuda" if on_gpu else "cpu",
        "world_size": world,
    }
