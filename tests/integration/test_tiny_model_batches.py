"""The tiny model's pre-training step computes a batch in length-sorted slices: the loss and the gradient
must be those of the same batch computed at once, right-padded, as transformers computes it."""

from __future__ import annotations

import pytest
import torch

from tpt_stages import tinymodel
from tpt_stages.tasks import arith, get_task


def test_slices_give_the_gradient_of_one_padded_batch():
    task = tinymodel.default_task()
    plugin = get_task(task)
    problems = arith.stream(task.arith.model_copy(update={"seed": 7}), 24)
    texts = ["\n".join(m["content"] for m in tinymodel._conversation(plugin, p, with_solution=True)) for p in problems]
    tokenizer = tinymodel.build_tokenizer(texts, 512)
    model = tinymodel._new_model(tokenizer, tinymodel.Architecture(), seed=0)
    rendered = [
        tokenizer.apply_chat_template(tinymodel._conversation(plugin, p, with_solution=True), tokenize=False)
        for p in problems
    ]

    tokenizer.padding_side = "right"
    batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (batch["attention_mask"] == 0).any(), "the problems must differ in length for padding to matter"
    whole = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
    whole.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)

    loss = tinymodel.accumulate_gradients(model, tokenizer, rendered, micro_batch_size=5)

    assert loss == pytest.approx(whole.item(), rel=1e-5)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
