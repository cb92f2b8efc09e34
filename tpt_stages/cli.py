"""`tpt`: run, inspect and debug Think-Prune-Train runs on one machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tpt_stages import layout, report
from tpt_stages.planner import Observation, StageRef, State
from tpt_stages.runner import StageProgress, load_status, run_to_end
from tpt_stages.sandbox.backends import SandboxUnavailable
from tpt_stages.spec import Phase, SelfImprovementRun, SpecError, load_all, loads_all
from tpt_stages.status import RunStatus
from tpt_stages.storage import open_store, split_uri

console = Console(stderr=True)


def say(text: str) -> None:
    """One line that is never wrapped: a log or a pipe keeps URIs and paths whole."""
    console.print(text, soft_wrap=True)


def stage_line(ref: StageRef, obs: Observation) -> str:
    """One line for a finished stage: round, stage, seconds and what it counted."""
    attempt = f" (attempt {ref.attempt + 1})" if ref.attempt else ""
    head = f"round {ref.round} {ref.stage.value}{attempt}"
    if obs.state is not State.succeeded:
        return f"{head}: [red]failed[/] after {obs.seconds:.0f} s: {escape(f'{obs.reason}: {obs.message}')}"
    r = obs.report
    counts = {
        layout.Stage.prepare: lambda: (
            f"{r['train_problems']:,} train and {r['test_problems']:,} test problems"
            + "".join(
                f" ({split}: {s['subset']} kept {s['kept']:,} of {s['of']:,})"
                for split, s in r.get("subsets", {}).items()
            )
        ),
        layout.Stage.think: lambda: f"{r['samples']:,} samples, {r['tokens']:,} tokens",
        layout.Stage.verify: lambda: ", ".join(f"{v} {n:,}" for v, n in r["verdicts"].items()),
        layout.Stage.score: lambda: (
            f"Pass@1 {100 * r['graders'][r['primary']]['pass1']:.1f}%, "
            f"Pass@{r['k']} {100 * r['graders'][r['primary']]['passk']:.1f}%"
        ),
        layout.Stage.select: lambda: f"{r['selected']:,} examples selected",
        layout.Stage.train: lambda: f"{r.get('examples', 0):,} examples, loss {r.get('train_loss', float('nan')):.3f}",
    }
    try:
        what = counts[ref.stage]()
    except (KeyError, TypeError):  # a report from an older version: the line still says it finished
        what = "done"
    cached = " (committed before)" if r.get("cached") else ""
    return f"{head}: {obs.seconds:.0f} s{cached}, {what}"


class Display:
    """A terminal's view: a line per finished stage, above a live per-round table and the running stage."""

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

    def finished(self, ref: StageRef, obs: Observation) -> None:
        say(stage_line(ref, obs))  # Live prints it above the table


class StageLog:
    """Output that is not a terminal (a log, CI, `| tee`): nothing redraws; a line per stage as it finishes
    and the per-round table once at the end."""

    def __init__(self) -> None:
        self.run: SelfImprovementRun | None = None
        self.state: RunStatus | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.run is not None and self.state is not None:
            console.print(rounds_table(self.run, self.state, with_message=False))

    def status(self, run: SelfImprovementRun, status: RunStatus) -> None:
        self.run, self.state = run, status

    def progress(self, p: StageProgress) -> None:
        pass

    def finished(self, ref: StageRef, obs: Observation) -> None:
        say(stage_line(ref, obs))


def rounds_table(run: SelfImprovementRun, status: RunStatus, *, with_message: bool = True) -> Table:
    """The per-round table; its title carries the status message unless `with_message` is False (a long
    message, paths included, would wrap at the table's width: it is printed on a line of its own then)."""
    k = next((rs.k for rs in status.rounds if rs.k), run.spec.evaluation.samples)
    color = {"Succeeded": "green", "Failed": "red", "Suspended": "yellow"}.get(status.phase.value, "cyan")
    message = f" {escape(status.message)}" if with_message else ""
    t = Table(title=f"{run.name} — [{color}]{status.phase.value}[/]{message}", title_justify="left")
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
        say(f"[bold]{run.name}[/]: artifacts in {escape(run.run_uri())}")
        with Display() if console.is_terminal else StageLog() as display:
            status = run_to_end(run, display)
        results.append((run, status))
        if status.phase is Phase.failed:
            say(f"[red]run {run.name} failed:[/] {escape(status.message)}")
        say(f"report: {escape(run.run_uri())}/{layout.REPORT_MD}")
    if len(results) > 1:
        store = open_store(runs[0].spec.storage.uri, endpoint=runs[0].spec.storage.endpoint)
        stem = Path(args.file).stem
        store.write_text(f"{stem}-report.md", report.markdown(results))
        store.write_bytes(f"{stem}-report.png", report.plot(results))
        say(escape(f"comparison: {store.uri}/{stem}-report.md and {stem}-report.png"))
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
        store, md_key, png_key = open_store(args.out), layout.REPORT_MD, layout.REPORT_PNG
    elif len(runs) == 1:
        store, md_key, png_key = open_store(args.run_uris[0]), layout.REPORT_MD, layout.REPORT_PNG
    else:
        # A comparison is no run's own report: it goes beside the first run, named for the runs it compares.
        stem = "-vs-".join(run.name for run, _ in runs)
        store = open_store(split_uri(args.run_uris[0])[0] or ".")
        md_key, png_key = f"{stem}-report.md", f"{stem}-report.png"
    store.write_text(md_key, md)
    store.write_bytes(png_key, png)
    print(md)
    say(escape(f"wrote {store.uri}/{md_key} and {store.uri}/{png_key}"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a run's artifacts: only a run's directory (one with its spec.yaml), never a bare prefix."""
    store = open_store(args.run_uri)
    keys = store.list()
    if not keys:
        say(escape(f"nothing to delete at {store.uri}"))
        return 0
    if layout.SPEC not in keys:
        raise SpecError(
            f"{store.uri} is not a run's directory (no {layout.SPEC}): refusing to delete {len(keys)} objects"
        )
    if not args.yes:
        say(escape(f"would delete {len(keys)} objects under {store.uri}: pass --yes to delete them"))
        return 1
    # spec.yaml last: until it is gone, an interrupted delete can be run again. One prefix per top-level
    # entry (problems/, round-NN/, ...): a listing and batched deletes each, not a request per object.
    tops = sorted({k.split("/", 1)[0] for k in keys} - {layout.SPEC})
    deleted = sum(store.delete_prefix(t) for t in tops) + store.delete_prefix(layout.SPEC)
    say(escape(f"deleted {deleted} objects under {store.uri}"))
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
    p.add_argument("run_uri", help="the run's directory, e.g. file://./tpt-runs/quickstart-pruned")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("report", help="render report.md and report.png again (several runs: one comparison)")
    p.add_argument("run_uris", nargs="+")
    p.add_argument(
        "--out",
        help="directory for report.md and report.png (default: the run's own directory; several runs: "
        "NAME-vs-NAME-report.md and .png beside the first run)",
    )
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("delete", help="delete a run's artifacts (what storage.deleteOnRunDeletion does in a cluster)")
    p.add_argument("run_uri", help="the run's directory, e.g. file://./tpt-runs/quickstart-pruned")
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
        say(f"[red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: run `tpt run` again to resume where it stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
