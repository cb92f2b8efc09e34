"""A Llama-shaped model with random weights, made offline, for throughput benchmarks (no download, no training):
the tiny models' arith tokenizer and chat template (so the train and think stages take it as they take the quick
start's model) on a body of a chosen size. Its samples are noise; its FLOPs are a real model's.

    python benchmarks/random_llama.py --size llama-1b --out /tmp/llama-1b

`llama-1b` is Llama 3.2 1B's body (hidden 2048, 16 layers, 32 query and 8 key/value heads, MLP 8192): 0.97 B
parameters with the 512-token vocabulary. `cpu-small` is a size a 2-core CPU trains in seconds, to run the
benchmarks' code paths there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SIZES = {
    "llama-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                 "intermediate_size": 8192},
    "cpu-small": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                  "intermediate_size": 512},
}  # fmt: skip


def build(out: Path, size: str, seed: int = 0) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from tpt_stages import tinymodel
    from tpt_stages.tasks import arith, get_task

    task = tinymodel.default_task()
    plugin = get_task(task)
    # The tokenizer learns the text of the task's conversations, as the tiny models' does.
    texts = [
        "\n".join([*(m["content"] for m in plugin.messages(p)), plugin.reference_completion(p)])
        for p in arith.generate(task.arith, "train")[:2000]
    ]
    tokenizer = tinymodel.build_tokenizer(texts, vocab_size=512)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    # Initialised where it will run, in the dtype it is saved in: a 1 B model initialises in a second on a GPU.
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu else torch.float32
    with torch.device("cuda" if on_gpu else "cpu"):
        model = LlamaForCausalLM(config).to(dtype)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = {
        "size": size,
        "parameters": model.num_parameters(),
        "dtype": str(dtype).removeprefix("torch."),
        **SIZES[size],
    }
    (out / "random_llama.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(build(args.out, args.size, args.seed)))


if __name__ == "__main__":
    main()
