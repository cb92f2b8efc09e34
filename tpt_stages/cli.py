"""`tpt`: run, inspect and debug Think-Prune-Train runs on one machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tpt_stages import layout, report
from tpt_stages.runner import StageProgress, load_status, run_to_end
from tpt_stages.sandbox.backends import SandboxUnavailable
from tpt_stages.spec import Phase, SelfImprovementRun, SpecError, load_all, loads_all
from tpt_stages.status import RunStatus
from tpt_stages.storage import open_store

console = Console(stderr=True)


class Display:
    """A live view of the current stage and the per-round table."""

    def __init__(self) -> None:
        # get_renderable: redrawn on every refresh, so the elapsed time of the running stage ticks.
        self.run: SelfImprovementRun | None = None
        self.state: RunStatus | None = None
        self.stage: StageProgress | None = None
        self.live = Live(console=console, refresh_per_second=2, get_renderable=self._render)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)

    def _render(self):
        grid = Table.grid()
        if self.state is not None and self.run is not None:
            grid.add_row(rounds_table(self.run, self.state))
        if self.stage is not None and self.state is not None and self.state.phase is Phase.running:
            import time

            p = self.stage
            shards = f" shard {p.done}/{p.shards}" if p.shards > 1 else ""
            grid.add_row(f"[cyan]▶ {p.label}{shards}[/]  {time.monotonic() - p.started:5.0f} s")
        return grid

    def status(self, run: SelfImprovementRun, status: RunStatus) -> None:
        self.run, self.state = run, status
        self.live.refresh()

    def progress(self, p: StageProgress) -> None:
        self.stage = p
        self.live.refresh()


def rounds_table(run: SelfImprovementRun, status: RunStatus) -> Table:
    k = next((rs.k for rs in status.rounds if rs.k), run.spec.evaluation.samples)
    color = {"Succeeded": "green", "Failed": "red", "Suspended": "yellow"}.get(status.phase.value, "cyan")
    t = Table(title=f"{run.name} — [{color}]{status.phase.value}[/] {status.message}", title_justify="left")
    for h in report.HEADER:
        t.add_column(h.replace("@k", f"@{k}"), justify="right")
    for row in report.table(status):
        t.add_row(*row)
    return t


def cmd_run(args: argparse.Namespace) -> int:
    runs = load_all(args.file)
    if args.store:
        runs = [
            r.model_copy(
                update={
                    "spec": r.spec.model_copy(
                        update={"storage": r.spec.storage.model_copy(update={"uri": args.store.rstrip("/")})}
                    )
                }
            )
            for r in runs
        ]
    results = []
    for run in runs:
        console.print(f"[bold]{run.name}[/]: artifacts in {run.run_uri()}")
        with Display() as display:
            status = run_to_end(run, display)
        results.append((run, status))
        if status.phase is Phase.failed:
            console.print(f"[red]run {run.name} failed:[/] {status.message}")
        console.print(f"report: {run.run_uri()}/{layout.REPORT_MD}")
    if len(results) > 1:
        store = open_store(runs[0].spec.storage.uri, endpoint=runs[0].spec.storage.endpoint)
        stem = Path(args.file).stem
        store.write_text(f"{stem}-report.md", report.markdown(results))
        store.write_bytes(f"{stem}-report.png", report.plot(results))
        console.print(f"comparison: {store.uri}/{stem}-report.md and {stem}-report.png")
    return 0 if all(s.phase is Phase.succeeded for _, s in results) else 1


def _open_run(uri: str) -> tuple[SelfImprovementRun, RunStatus]:
    store = open_store(uri)
    try:
        run = loads_all(store.read_text(layout.SPEC))[0]
    except FileNotFoundError:
        raise SpecError(f"no run at {uri} (no {layout.SPEC})") from None
    return run, load_status(store) or RunStatus()


def cmd_status(args: argparse.Namespace) -> int:
    run, status = _open_run(args.run_uri)
    if args.json:
        import json

        print(json.dumps(status.to_document(), indent=2))
    else:
        Console().print(rounds_table(run, status))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    runs = [_open_run(u) for u in args.run_uris]
    md, png = report.markdown(runs), report.plot(runs)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / layout.REPORT_MD).write_text(md)
        (out / layout.REPORT_PNG).write_bytes(png)
        console.print(f"wrote {out / layout.REPORT_MD} and {out / layout.REPORT_PNG}")
    else:
        store = open_store(args.run_uris[0])
        store.write_text(layout.REPORT_MD, md)
        store.write_bytes(layout.REPORT_PNG, png)
    print(md)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a run's artifacts: only a run's directory (one with its spec.yaml), never a bare prefix."""
    store = open_store(args.run_uri)
    keys = store.list()
    if not keys:
        console.print(f"nothing to delete at {store.uri}")
        return 0
    if layout.SPEC not in keys:
        raise SpecError(
            f"{store.uri} is not a run's directory (no {layout.SPEC}): refusing to delete {len(keys)} objects"
        )
    if not args.yes:
        console.print(f"would delete {len(keys)} objects under {store.uri}: pass --yes to delete them")
        return 1
    # spec.yaml last: until it is gone, an interrupted delete can be run again. One prefix per top-level
    # entry (problems/, round-NN/, ...): a listing and batched deletes each, not a request per object.
    tops = sorted({k.split("/", 1)[0] for k in keys} - {layout.SPEC})
    deleted = sum(store.delete_prefix(t) for t in tops) + store.delete_prefix(layout.SPEC)
    console.print(f"deleted {deleted} objects under {store.uri}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tpt_stages import grade_cli, tinymodel
    from tpt_stages.sandbox import cli as sandbox_cli

    parser = argparse.ArgumentParser(prog="tpt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run every round of the runs in a SelfImprovementRun file")
    p.add_argument("file", help="run.yaml (one or more SelfImprovementRun documents)")
    p.add_argument("--store", help="storage URI overriding spec.storage.uri (file:// or s3://)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="print a run's status")
    p.add_argument("run_uri", help="the run's directory, e.g. file://./tpt-runs/quickstart")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("report", help="render report.md and report.png again (several runs: one comparison)")
    p.add_argument("run_uris", nargs="+")
    p.add_argument("--out", help="directory for the report (default: the first run's directory)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("delete", help="delete a run's artifacts (what storage.deleteOnRunDeletion does in a cluster)")
    p.add_argument("run_uri", help="the run's directory, e.g. file://./tpt-runs/quickstart")
    p.add_argument("--yes", action="store_true", help="delete without asking (else: say what would go)")
    p.set_defaults(func=cmd_delete)
    grade_cli.add_parser(sub)
    sandbox_cli.add_parser(sub)
    tinymodel.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, SandboxUnavailable) as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: run `tpt run` again to resume where it stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
