"""The GPU paths on a tiny model, on the real libraries: the transformers engine samples on CUDA in bfloat16, and
the train stage's trainer (TRL) trains on CUDA in bfloat16. Skipped where torch sees no CUDA device; a GPU
machine runs them with `pytest -m gpu tests/gpu` (benchmarks/gpu_check.sh)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tpt_stages import tinymodel
from tpt_stages.engines import SamplingConfig, open_engine, render_prompts
from tpt_stages.records import Example, prompt_hash
from tpt_stages.spec import Train
from tpt_stages.tasks import arith, get_task
from tpt_stages.trainer import train_sft

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """Loadable in seconds; the paths under test do not depend on what the model knows."""
    out = tmp_path_factory.mktemp("tiny")
    tinymodel.build_tiny_model(out, pretraining=tinymodel.Pretraining(target_pass1=None, max_steps=0), log=print)
    return out


@pytest.fixture(scope="module")
def task_and_problems():
    spec = tinymodel.default_task()
    return get_task(spec), arith.generate(spec.arith, "train")[:128]


def test_the_transformers_engine_samples_on_cuda_in_bfloat16_and_a_seed_repeats_it(untrained_model, task_and_problems):
    task, problems = task_and_problems
    engine = open_engine("transformers", str(untrained_model), dtype="auto", seed=0)
    weights = next(engine.model.parameters())
    assert (weights.device.type, weights.dtype) == ("cuda", torch.bfloat16)

    conversations = [task.messages(p) for p in problems[:8]]
    cfg = SamplingConfig(n=3, temperature=0.8, top_p=1.0, max_tokens=24, seed=1)
    gens = engine.generate(conversations, cfg)
    assert [g.prompt_tokens for g in gens] == [len(p) for p in render_prompts(engine.tokenizer, conversations)]
    for g in gens:
        assert len(g.completions) == len(g.completion_tokens) == len(g.finish_reasons) == 3
        for tokens, reason in zip(g.completion_tokens, g.finish_reasons, strict=True):
            assert 1 <= tokens <= 24
            assert reason == "stop" or (reason == "length" and tokens == 24)
    # A resumed stage samples again with the same seed: it must get the same samples.
    again = engine.generate(conversations, cfg)
    assert [g.completions for g in again] == [g.completions for g in gens]


def _completion_loss(model_dir, examples: list[Example]) -> float:
    """Mean loss on the completion tokens, the tokens the trainer trains on, in float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to("cuda").eval()
    losses = []
    with torch.no_grad():
        for e in examples:
            prompt = tok.apply_chat_template(e.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
            full = tok.apply_chat_template(e.prompt + e.completion, tokenize=True, return_dict=True)["input_ids"]
            ids = torch.tensor([full], device="cuda")
            labels = ids.clone()
            labels[0, : len(prompt["input_ids"])] = -100
            losses.append(model(input_ids=ids, labels=labels).loss.item())
    return sum(losses) / len(losses)


def test_the_trainer_trains_on_cuda_in_bfloat16_and_the_loss_falls(untrained_model, task_and_problems, tmp_path):
    task, problems = task_and_problems
    examples = [
        Example(
            problem_id=p.id,
            prompt=task.messages(p),
            completion=[{"role": "assistant", "content": task.reference_completion(p)}],
            prompt_hash=prompt_hash(task.messages(p)),
            source_round=0,
            sample_index=0,
        )
        for p in problems
    ]
    out = tmp_path / "trained"
    stats = train_sft(str(untrained_model), examples, Train(learning_rate=1e-3, batch_size=8, max_length=256), str(out))

    assert stats["device"] == "cuda"
    assert stats["steps"] == len(examples) // 8
    assert stats["train_loss"] is not None and math.isfinite(stats["train_loss"])
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    # 16 steps at 1e-3 take an untrained model's completion loss (~ln 512 = 6.2) well down.
    assert _completion_loss(out, examples[:32]) < _completion_loss(untrained_model, examples[:32]) - 0.5
