"""`tpt run`: the planner's actions carried out on one machine, each stage a `python -m tpt_stages` process.

The status is saved next to the artifacts after every decision, so a rerun after Ctrl-C or a crash resumes at
the stage it points to; a stage that had already committed exits at once with its recorded report.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tpt_stages import layout
from tpt_stages.launcher import StageProcess, wait_for_exit
from tpt_stages.planner import ABSENT, Cancel, Launch, Observation, State, plan
from tpt_stages.spec import Phase, SelfImprovementRun, SpecError, dumps, loads_all
from tpt_stages.stage import merge_shard_reports
from tpt_stages.status import RunStatus
from tpt_stages.storage import Store, open_store

# Fields a running run may not change: they define what its artifacts mean (also enforced by the CRD's CEL).
IMMUTABLE = ("model", "task", "storage", "think.shards")


def immutable_changes(old: SelfImprovementRun, new: SelfImprovementRun) -> list[str]:
    a, b = old.spec.model_dump(), new.spec.model_dump()
    changed = []
    for path in IMMUTABLE:
        x, y = a, b
        for part in path.split("."):
            x, y = x[part], y[part]
        if x != y:
            changed.append(path)
    return changed


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_status(store: Store) -> RunStatus | None:
    try:
        return RunStatus.model_validate_json(store.read_bytes(layout.STATUS))
    except FileNotFoundError:
        return None


def save_status(store: Store, status: RunStatus) -> None:
    store.write_text(layout.STATUS, json.dumps(status.to_document(), indent=2))


def snapshot_spec(store: Store, run: SelfImprovementRun) -> None:
    """Record the spec; refuse a changed document whose immutable fields differ from the recorded one."""
    try:
        previous = loads_all(store.read_text(layout.SPEC))[0]
    except FileNotFoundError:
        previous = None
    if previous is not None:
        changed = immutable_changes(previous, run)
        if changed:
            raise SpecError(
                f"run {run.name!r} already exists at {store.uri} with a different "
                f"{', '.join('spec.' + c for c in changed)}; these cannot change mid-run "
                "(use a new metadata.name, or delete the run's directory)"
            )
    store.write_text(layout.SPEC, dumps(run))


@dataclass
class StageProgress:
    """What the executor tells the display while a stage runs."""

    label: str
    shards: int
    done: int = 0
    started: float = 0.0


def shards_at_once(stage: layout.Stage, gpus: int) -> int:
    """How many of a stage's shard processes one machine runs at a time: one per GPU for a GPU stage, else
    one. A shard already uses every core (vLLM on the CPU keeps both of 2 cores busy, a verify shard runs one
    sandbox harness per CPU): two think shards on 2 cores sampled half as fast as one (docs/benchmarks.md)."""
    return max(1, gpus) if stage in layout.GPU_STAGES else 1


class LocalExecutor:
    """Runs a Launch as one process per shard (`shards_at_once` at a time) and observes the outcome."""

    def __init__(self, run: SelfImprovementRun, store: Store, log_dir: Path):
        self.run, self.store, self.log_dir = run, store, log_dir
        self.gpus = _visible_gpus()
        # Stages fork from a server that has imported what they import (launcher.py), where no GPU is visible.
        self.warm = not self.gpus and sys.platform.startswith("linux")
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def command(self, action: Launch, shard: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "tpt_stages",
            action.ref.stage.value,
            "--round",
            str(action.ref.round),
            "--spec",
            f"{self.store.uri}/{layout.SPEC}",
        ]
        if action.shards > 1:
            cmd += ["--shard", str(shard), "--num-shards", str(action.shards)]
        return cmd

    def execute(self, action: Launch, on_progress: Callable[[StageProgress], None]) -> Observation:
        ref = action.ref
        progress = StageProgress(f"round {ref.round} {ref.stage.value}", action.shards, started=time.monotonic())
        on_progress(progress)
        reports, failures = [], []
        parallel = shards_at_once(ref.stage, len(self.gpus))
        # Shards side by side (only ever on GPUs) get one GPU each; a single shard, e.g. train, sees them all.
        pin = action.shards > 1 and parallel > 1
        devices: dict[int, str] = {}
        pending = list(range(action.shards))
        running: list[tuple[int, StageProcess, Path, Path]] = []
        with tempfile.TemporaryDirectory(prefix="tpt-reports-") as tmp:
            try:
                while pending or running:
                    while pending and len(running) < parallel:
                        shard = pending.pop(0)
                        report_file = Path(tmp) / f"{shard}.json"
                        log = self.log_dir / f"{ref.slug}-shard{shard}.log"
                        env = {**os.environ, "TPT_REPORT_FILE": str(report_file), "PYTHONUNBUFFERED": "1"}
                        if pin:
                            devices[shard] = next(g for g in self.gpus if g not in devices.values())
                            env["CUDA_VISIBLE_DEVICES"] = devices[shard]
                        proc = StageProcess(self.command(action, shard), env, log, warm=self.warm)
                        running.append((shard, proc, report_file, log))
                    wait_for_exit([r[1] for r in running])
                    for item in [r for r in running if r[1].poll() is not None]:
                        running.remove(item)
                        shard, proc, report_file, log = item
                        devices.pop(shard, None)
                        if proc.returncode == 0 and report_file.exists():
                            reports.append(json.loads(report_file.read_text()))
                        else:
                            failures.append((shard, proc.returncode, log))
                        progress.done += 1
                        on_progress(progress)
            finally:
                for _, proc, _, _ in running:
                    _terminate(proc)
        seconds = time.monotonic() - progress.started
        if failures:
            shard, code, log = failures[0]
            tail = _tail(log)
            reason = "InvalidInput" if code == 2 else "StageFailed"
            return Observation(
                State.failed,
                reason=reason,
                message=f"shard {shard} exited {code}: {tail} (log: {log})",
                seconds=seconds,
            )
        return Observation(
            State.succeeded,
            report=merge_shard_reports(reports),
            seconds=seconds,
            gpus=len(self.gpus) if ref.stage in layout.GPU_STAGES else 0,
        )


def _terminate(proc: StageProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
        if proc.wait(timeout=10) is None:
            os.killpg(proc.pid, 9)
            proc.wait()


def _tail(log: Path, lines: int = 3) -> str:
    text = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(text[-lines:])[-600:] if text else "(no output)"


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return [str(i) for i in range(out.stdout.count("GPU "))]
    except (OSError, subprocess.TimeoutExpired):
        return []


def run_to_end(run: SelfImprovementRun, display=None, log_dir: Path | None = None) -> RunStatus:
    """Drive one run until it succeeds, fails or is suspended; returns the final status."""
    store = open_store(run.run_uri(), endpoint=run.spec.storage.endpoint)
    snapshot_spec(store, run)
    log_dir = log_dir or (store.root / "logs" if hasattr(store, "root") else Path(".tpt-logs") / run.name)
    executor = LocalExecutor(run, store, log_dir)
    status = load_status(store)
    obs = ABSENT
    on_progress = display.progress if display else (lambda p: None)
    while True:
        decision = plan(run.spec, status, obs, now())
        if decision.status != status:
            status = decision.status
            save_status(store, status)
            if display:
                display.status(run, status)
        launches = [a for a in decision.actions if isinstance(a, Launch)]
        if any(isinstance(a, Cancel) for a in decision.actions) or not launches:
            break
        obs = executor.execute(launches[0], on_progress)
        if display:
            display.finished(launches[0].ref, obs)
    if status.phase in (Phase.succeeded, Phase.failed):
        from tpt_stages.report import write_report

        write_report(store, run, status)
    return status
