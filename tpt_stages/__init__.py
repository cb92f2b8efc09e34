"""tpt_stages: the programs that run inside every Job of a Think-Prune-Train run, and the pieces the local
runner and the operator share (spec, status, planner, storage)."""

__version__ = "0.1.0"
