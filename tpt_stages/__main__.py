"""`python -m tpt_stages <stage> --round R [--shard I --num-shards N] [--spec URI]`: one stage of a run.

What runs inside every Job, and what `tpt run` starts as subprocesses. Exit status 0 means committed (or
already committed); 2 means a problem the user must fix; anything else is retried by the planner.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from tpt_stages import layout
from tpt_stages.layout import Stage
from tpt_stages.sandbox.backends import SandboxUnavailable
from tpt_stages.spec import SpecError
from tpt_stages.stage import Context, InfrastructureError, StageError, load_run, open_run_store, run_stage
from tpt_stages.storage import LocalStore


def _stage_fn(stage: Stage):
    from tpt_stages.stages import prepare, score, select, think, train, verify

    return {
        Stage.prepare: prepare.run,
        Stage.think: think.run,
        Stage.verify: verify.run,
        Stage.score: score.run,
        Stage.select: select.run,
        Stage.train: train.run,
    }[stage]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tpt_stages", description=__doc__)
    p.add_argument("stage", choices=[s.value for s in Stage])
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--spec", help="run document (path, file:// or s3://); default: $TPT_SPEC")
    p.add_argument("--shard", type=int, default=int(os.environ.get("JOB_COMPLETION_INDEX", "0")))
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--sandbox-backend", default=os.environ.get("TPT_SANDBOX_BACKEND", "auto"))
    p.add_argument(
        "--phase",
        choices=["all", "fetch", "grade", "upload"],
        default="all",
        help="verify only: the split used by the cluster's credential-free sandbox pod",
    )
    p.add_argument("--workdir", type=Path, default=Path("/work"))
    return p.parse_args(argv)


def _wait_for(path: Path, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise StageError(f"timed out waiting for {path}")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    stage = Stage(args.stage)
    if not 0 <= args.shard < args.num_shards:
        print(f"error: shard {args.shard} is outside 0..{args.num_shards - 1}", file=sys.stderr)
        return 2
    try:
        run = load_run(args.spec)
        local = LocalStore(args.workdir)
        # The sandbox container holds no credentials: it reads and writes only its workdir.
        store = local if args.phase == "grade" else open_run_store(run)
        ctx = Context(
            run,
            store,
            args.round,
            args.shard if stage in layout.SHARDED else None,
            args.num_shards if stage in layout.SHARDED else 1,
            sandbox_backend=args.sandbox_backend,
            scrub_inputs=args.phase == "grade",
        )
        if args.phase != "all":
            from tpt_stages.stages import verify

            if stage is not Stage.verify:
                raise StageError("--phase is for the verify stage only")
            if args.phase == "fetch":
                verify.fetch(ctx, local)
            elif args.phase == "upload":
                _wait_for(args.workdir / verify.DONE)
                verify.upload(ctx, local)
                (args.workdir / verify.UPLOADED).touch()
            else:
                run_stage(stage, _stage_fn(stage), ctx)
                (args.workdir / verify.DONE).touch()
                _wait_for(args.workdir / verify.UPLOADED)
            return 0
        main_rank = int(os.environ.get("RANK", "0")) == 0
        run_stage(stage, _stage_fn(stage), ctx, commit=main_rank)
        return 0
    except (SpecError, StageError, SandboxUnavailable) as e:  # the user must fix these: no retry helps
        print(f"error: {e}", file=sys.stderr)
        return 2
    except InfrastructureError as e:  # retried; the last line of the log is what the run's message shows
        print(f"error: infrastructure failure: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
