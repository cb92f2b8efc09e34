"""prepare: materialise the run's train and test problems once, under `problems/`.

Every round, shard and stage then reads the same problems, GPU Jobs need no dataset hub, and contamination is
checked once, before any compute is spent.
"""

from __future__ import annotations

import random
import re

from tpt_stages import layout
from tpt_stages.manifest import StageOutput
from tpt_stages.records import Problem
from tpt_stages.spec import TaskKind
from tpt_stages.stage import Context, StageError


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def check_overlap(train: list[Problem], test: list[Problem]) -> None:
    test_questions = {_norm(p.question): p.id for p in test}
    clash = [(p.id, test_questions[_norm(p.question)]) for p in train if _norm(p.question) in test_questions]
    if clash:
        shown = ", ".join(f"{a} = {b}" for a, b in clash[:5])
        raise StageError(f"{len(clash)} train problems also appear in the test set (train = test: {shown})")
    ids = [p.id for p in train] + [p.id for p in test]
    if len(set(ids)) != len(ids):
        raise StageError("problem ids are not unique across the train and test sets")


def load(ctx: Context) -> tuple[list[Problem], list[Problem], dict]:
    """Train and test problems, and for each split with a `subset`: its name and how many problems it kept
    of how many."""
    task = ctx.spec.task
    if task.generated:
        from tpt_stages.tasks.arith import generate

        programs = task.kind is TaskKind.code
        train, test = generate(task.arith, "train", programs=programs), generate(task.arith, "test", programs=programs)
        return train, test, {}
    from tpt_stages.datasets import load as load_dataset

    loaded, subsets = {}, {}
    for split, ds in (("train", task.train), ("test", task.test)):
        loaded[split] = load_dataset(ds, task.kind, split_hint=split)
        if ds.subset is not None:
            kept = len(loaded[split].problems)
            subsets[split] = {"subset": ds.subset.value, "kept": kept, "of": loaded[split].subset_of}
    return loaded["train"].problems, loaded["test"].problems, subsets


def run(ctx: Context, out: StageOutput) -> dict:
    train, test, subsets = load(ctx)
    limit = ctx.spec.evaluation.max_problems
    if len(test) > limit:
        # The paper evaluates GSM8K on a 500-problem subset; seeded so every round sees the same one.
        test = sorted(random.Random(ctx.spec.select.seed).sample(test, limit), key=lambda p: p.id)
    if not train or not test:
        raise StageError(f"need train and test problems, got {len(train)} train and {len(test)} test")
    check_overlap(train, test)
    out.write_jsonl("train.jsonl", train)
    out.write_jsonl("test.jsonl", test)
    return {
        "train_problems": len(train),
        "test_problems": len(test),
        **({"subsets": subsets} if subsets else {}),
        "artifacts": {"problems": ctx.uri(layout.stage_dir(0, layout.Stage.prepare))},
    }
