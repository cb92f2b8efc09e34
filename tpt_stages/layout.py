"""Where every artifact of a run lives, relative to the run's prefix (DESIGN §3). Pure string functions."""

from __future__ import annotations

from enum import Enum

SPEC = "spec.yaml"
STATUS = "status.json"
MANIFEST = "_SUCCESS.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"


class Stage(str, Enum):
    prepare = "prepare"
    think = "think"
    verify = "verify"
    score = "score"
    select = "select"
    train = "train"


SHARDED = frozenset({Stage.think, Stage.verify})
GPU_STAGES = frozenset({Stage.think, Stage.train})


def round_dir(r: int) -> str:
    return f"round-{r:02d}"


def stage_dir(r: int, stage: Stage, shard: int | None = None) -> str:
    """The directory a stage commits (its manifest sits inside). Sharded stages commit one per shard."""
    if stage is Stage.prepare:
        return "problems"
    if stage is Stage.train:
        # train_r produces M_{r+1}, which lives with the round that uses it.
        return f"{round_dir(r + 1)}/model"
    base = f"{round_dir(r)}/{stage.value}"
    if shard is not None:
        return f"{base}/shard-{shard:05d}"
    return base


def problems_file(split: str) -> str:
    return f"problems/{split}.jsonl"


def shard_file(r: int, stage: Stage, split: str, shard: int) -> str:
    return f"{stage_dir(r, stage, shard)}/{split}.jsonl"


def score_file(r: int) -> str:
    return f"{stage_dir(r, Stage.score)}/score.json"


def select_file(r: int) -> str:
    return f"{stage_dir(r, Stage.select)}/train.jsonl"


def model_dir(r: int) -> str:
    """M_r for r >= 1 (M_0 is the spec's base model)."""
    return f"{round_dir(r)}/model"


def manifest(r: int, stage: Stage, shard: int | None = None) -> str:
    return f"{stage_dir(r, stage, shard)}/{MANIFEST}"
