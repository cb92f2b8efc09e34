"""A tiny Llama, built offline, that is *weak but not hopeless* at a generated task: the base model of the CPU
quick-starts and of the tests. `arith` (word problems, the default) or `code` (the same stories as programs
to write, graded in the sandbox).

Self-improvement only shows on a model that solves some problems, but not most: its own correct samples then
teach it something. A 4-layer, 128-wide Llama pre-trained from scratch crosses that window fast (about 15%
Pass@1 at 250 steps, 80% at 500 on `arith`), so pre-training evaluates often and stops at a target Pass@1
instead of after a fixed number of steps.

The model learns the task as a run will pose it: prompts from the task plugin (`messages`, with the spec's
prompt template), targets from its `reference_completion`, evaluation by its `grade`.

Contamination: the pre-training corpus comes from the generator seeded with `seed + 1_000_003` and skips every
question of the test split of the task's generator (by default the quick-start's). The held-out problems of
the adaptive stop are drawn from the pre-training stream, never from a run's test set.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tpt_stages.spec import ArithGenerator, TaskKind
from tpt_stages.spec import Task as TaskSpec

CORPUS_SEED_OFFSET = 1_000_003
EOS, PAD = "</s>", "<pad>"
SPECIAL_TOKENS = [PAD, EOS, "<|system|>", "<|user|>", "<|assistant|>"]

# The assistant turn ends with EOS because TRL adds no EOS to conversational data: the model learns to stop
# only if the template writes it. A prompt rendered with `add_generation_prompt` is a token-exact prefix of the
# same prompt followed by a completion (the role markers are special tokens, so no merge crosses the boundary),
# which is what keeps training and sampling on the same context.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}{{ '<|assistant|>' + m['content'] + eos_token }}"
    "{%- else -%}{{ '<|' + m['role'] + '|>' + m['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)


@dataclass(frozen=True)
class Architecture:
    # head_dim 32: a size vLLM's CPU attention kernels support.
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 512
    max_positions: int = 512


@dataclass(frozen=True)
class Pretraining:
    target_pass1: float | None = 0.15  # None: train exactly max_steps
    max_steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    # A step's batch runs as length-sorted slices of this many sequences: the same gradient with ~30% less
    # padding (one padded batch of 64 problems is a third padding); measured 0.53 -> 0.47 s a step on 2 cores.
    micro_batch_size: int = 16
    eval_start: int = 150  # no model reaches the window earlier; evaluating sooner only costs time
    eval_every: int = 25
    eval_problems: int = 256
    eval_temperature: float = 0.7
    eval_max_tokens: int = 64
    log_every: int = 50  # steps between loss lines (an evaluated step always has one)


def default_task(kind: TaskKind = TaskKind.arith) -> TaskSpec:
    """The task a tiny model is built for when none is given: the quick-start's generator, told as `kind`."""
    if kind is TaskKind.code:
        return TaskSpec(kind=kind, generator=ArithGenerator())
    return TaskSpec(kind=kind, grader="normalized")  # as the quick start grades


def _conversation(plugin, problem, *, with_solution: bool = False) -> list[dict[str, str]]:
    conv = plugin.messages(problem)
    if with_solution:
        conv = [*conv, {"role": "assistant", "content": plugin.reference_completion(problem)}]
    return conv


def build_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`. Digits stay single tokens: a tiny model learns
    column arithmetic on digits far more easily than on arbitrary multi-digit merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE, model_max_length=512
    )


def _new_model(tokenizer, arch: Architecture, seed: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.heads,
        max_position_embeddings=arch.max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model


def quick_pass1(
    model, tokenizer, plugin, grader: str, problems, *, temperature: float, max_tokens: int, seed: int
) -> float:
    """Pass@1 of one sample per problem at `temperature` (transformers' generate: no engine start-up), graded
    by the task plugin's `grader`."""
    import torch

    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(_conversation(plugin, p), add_generation_prompt=True, tokenize=False)
        for p in problems
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        out = model.generate(**batch, do_sample=True, temperature=temperature, top_p=1.0, max_new_tokens=max_tokens)
    model.train()
    completions = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    grades = plugin.grade(list(zip(problems, completions, strict=True)))
    return sum(g[grader].verdict.value == "correct" for g in grades) / len(problems)


def accumulate_gradients(model, tokenizer, texts: list[str], micro_batch_size: int) -> float:
    """Back-propagate the causal-LM loss of `texts` as one batch, computed in length-sorted slices of
    `micro_batch_size`; returns the batch's loss. The loss is the mean over the batch's predicted tokens, as
    one right-padded batch gives it: each slice's summed loss is divided by the whole batch's count, and the
    slices' gradients add up."""
    tokenizer.padding_side = "right"
    ids = sorted(tokenizer(texts, add_special_tokens=False)["input_ids"], key=len)
    predicted = sum(len(x) - 1 for x in ids)  # the first token of a sequence is never a target
    total = 0.0
    for start in range(0, len(ids), micro_batch_size):
        batch = tokenizer.pad({"input_ids": ids[start : start + micro_batch_size]}, return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels, num_items_in_batch=predicted).loss
        loss.backward()
        total += loss.item()
    return total


def _pretrain(
    model, tokenizer, plugin, grader, problems, held_out, cfg: Pretraining, seed: int, log
) -> tuple[int, list]:
    """Causal-LM pre-training on chat-rendered problems (prompt and solution), stopping once a quick sampled
    evaluation reaches `cfg.target_pass1`. Constant learning rate after warm-up: the stopping step is not known
    in advance, so no schedule could decay towards it."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    rng = random.Random(seed)
    evals: list[tuple[int, float]] = []
    model.train()
    for step in range(1, cfg.max_steps + 1):
        chunk = rng.sample(problems, cfg.batch_size)
        texts = [
            tokenizer.apply_chat_template(_conversation(plugin, p, with_solution=True), tokenize=False) for p in chunk
        ]
        loss = accumulate_gradients(model, tokenizer, texts, cfg.micro_batch_size)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        due = step >= cfg.eval_start and (step - cfg.eval_start) % cfg.eval_every == 0
        if step % cfg.log_every == 0 and not (cfg.target_pass1 is not None and due):  # evaluated: a line below
            log(f"step {step}: loss {loss:.3f}")
        if cfg.target_pass1 is not None and due:
            p1 = quick_pass1(
                model,
                tokenizer,
                plugin,
                grader,
                held_out,
                temperature=cfg.eval_temperature,
                max_tokens=cfg.eval_max_tokens,
                seed=seed + step,
            )
            evals.append((step, p1))
            log(f"step {step}: loss {loss:.3f}, quick Pass@1 {p1:.3f}")
            if p1 >= cfg.target_pass1:
                return step, evals
    return cfg.max_steps, evals


def build_tiny_model(
    out_dir: str | Path,
    *,
    task: TaskSpec | None = None,
    pretraining: Pretraining | None = None,
    arch: Architecture | None = None,
    seed: int = 0,
    log=print,
) -> dict[str, Any]:
    """Build, pre-train and save the tiny model for `task` (a generated task: `arith`, or `code` with a
    generator; default: `default_task()`) in Hugging Face format (float32); returns what `tiny_model.json`
    records. `Pretraining(target_pass1=None, max_steps=0)` gives an untrained model in a second or two, for
    tests that only need a loadable model. Deterministic given `seed` on a given machine and thread count."""
    import torch
    import transformers

    from tpt_stages.tasks import arith, get_task

    task = task or default_task()
    if not task.generated:
        raise ValueError(f"a tiny model is built for a generated task (arith, or code with a generator), not {task}")
    plugin = get_task(task)
    pretraining = pretraining or Pretraining()
    arch = arch or Architecture()
    start = time.monotonic()
    programs = task.kind is TaskKind.code
    corpus_cfg = task.arith.model_copy(update={"seed": seed + CORPUS_SEED_OFFSET})
    excluded = frozenset(p.question for p in arith.generate(task.arith, "test", programs=programs))
    n_train = min(max(pretraining.max_steps * pretraining.batch_size // 2, 2000), 40_000)
    problems = arith.stream(corpus_cfg, pretraining.eval_problems + n_train, exclude=excluded, programs=programs)
    held_out, train = problems[: pretraining.eval_problems], problems[pretraining.eval_problems :]

    # Trained on the text it will see (the role markers and EOS are special tokens, added separately).
    texts = ["\n".join(m["content"] for m in _conversation(plugin, p, with_solution=True)) for p in train[:2000]]
    tokenizer = build_tokenizer(texts, arch.vocab_size)
    model = _new_model(tokenizer, arch, seed)
    steps, evals = (0, [])
    if pretraining.max_steps > 0:
        steps, evals = _pretrain(model, tokenizer, plugin, task.primary_grader, train, held_out, pretraining, seed, log)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.padding_side = "right"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = {
        "seed": seed,
        "steps": steps,
        "pass1": evals[-1][1] if evals else None,
        "evals": [{"step": s, "pass1": p} for s, p in evals],
        "seconds": round(time.monotonic() - start, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": asdict(arch),
        "pretraining": asdict(pretraining),
        "task": task.model_dump(mode="json", by_alias=True, exclude_none=True),
        "corpus": {"generator_seed": corpus_cfg.seed, "excluded_test_split_of_seed": task.arith.seed},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (out / "tiny_model.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _handler(args: argparse.Namespace) -> int:
    pre = Pretraining(
        target_pass1=args.target_pass1,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
    )
    record = build_tiny_model(args.out, task=default_task(TaskKind(args.task)), pretraining=pre, seed=args.seed)
    print(json.dumps({k: record[k] for k in ("steps", "pass1", "seconds", "parameters")}))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "tiny-model",
        help="build a tiny model offline for the arith or code quick start (their base model)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="directory for the Hugging Face model")
    p.add_argument(
        "--task",
        choices=[TaskKind.arith.value, TaskKind.code.value],
        default=TaskKind.arith.value,
        help="arith: word problems; code: the same stories as programs, graded in the sandbox (default: arith)",
    )
    p.add_argument(
        "--target-pass1",
        type=float,
        default=Pretraining.target_pass1,
        help="stop pre-training once a quick sampled evaluation reaches this Pass@1",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=Pretraining.max_steps)
    p.add_argument("--batch-size", type=int, default=Pretraining.batch_size)
    p.add_argument("--learning-rate", type=float, default=Pretraining.learning_rate)
    p.set_defaults(func=_handler)
