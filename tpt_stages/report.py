"""The run report: a per-round table (`report.md`) and a plot (`report.png`) of Pass@1 and Pass@k per round
and the pruning funnel. Several runs (for example pruned vs unpruned) can be drawn on one picture, which says
in words what it shows: each run's Pass@1 from its first round to its last, and what each strategy trains on."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from tpt_stages import layout
from tpt_stages.selection import KEEPS
from tpt_stages.spec import PruneStrategy, SelfImprovementRun
from tpt_stages.status import RunStatus
from tpt_stages.storage import Store


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def table(status: RunStatus) -> list[list[str]]:
    """Rows of the per-round table: round, Pass@1, Pass@k, Correct@k, kept/generated, seconds."""
    rows = []
    for rs in status.rounds:
        if rs.pass1 is None:
            continue
        f = rs.funnel
        kept = f"{f.selected}/{f.generated}" if f else "—"
        rows.append(
            [str(rs.round), _pct(rs.pass1), _pct(rs.passk), _pct(rs.correctk), kept, f"{sum(rs.seconds.values()):.0f}"]
        )
    return rows


HEADER = ["round", "Pass@1 %", "Pass@k %", "Correct@k %", "kept/generated", "seconds"]
FUNNEL_HEADER = ["round", "problems", "samples", "answered", "correct", "problems with a kept sample", "selected"]


def outcome(run: SelfImprovementRun, status: RunStatus) -> str | None:
    """Pass@1 from the first evaluated round to the last, in words; None before two rounds are evaluated."""
    evaluated = [rs for rs in status.rounds if rs.pass1 is not None]
    if len(evaluated) < 2:
        return None
    first, last = evaluated[0], evaluated[-1]
    change = 100 * (last.pass1 - first.pass1)
    return (
        f"{run.name}: Pass@1 {_pct(first.pass1)} → {_pct(last.pass1)} ({change:+.1f} points from round "
        f"{first.round} to {last.round})"
    )


def markdown(runs: Sequence[tuple[SelfImprovementRun, RunStatus]]) -> str:
    out = ["# Think, Prune, Train report", ""]
    for run, status in runs:
        spec = run.spec
        k = next((rs.k for rs in status.rounds if rs.k), spec.evaluation.samples)
        out += [
            f"## {run.name}: {status.phase.value}" + (f" ({status.reason})" if status.reason else ""),
            "",
            f"model `{spec.model.uri}`, task `{spec.task.kind.value}` graded by `{spec.task.primary_grader}`, "
            f"pruning `{spec.select.strategy.value}`, f = {spec.examples_per_round}, "
            f"{spec.think.samples_per_problem} samples at T = {spec.think.temperature}, "
            f"evaluation k = {k} at T = {spec.evaluation.temperature}, lr = {spec.train.learning_rate:g}.",
            "",
            "| " + " | ".join(h.replace("@k", f"@{k}") for h in HEADER) + " |",
            "|" + "---|" * len(HEADER),
        ]
        out += ["| " + " | ".join(row) + " |" for row in table(status)]
        said = outcome(run, status)
        if said:
            out += ["", f"{said}."]
        funnels = [(rs.round, rs.funnel) for rs in status.rounds if rs.funnel]
        if funnels:
            out += [
                "",
                f"Pruning, per round, of the train samples: `{spec.select.strategy.value}` keeps "
                f"{KEEPS[spec.select.strategy]}; of the problems with a kept sample, one sample each is selected, "
                f"at most f = {spec.examples_per_round:,}.",
                "",
                "| " + " | ".join(FUNNEL_HEADER) + " |",
                "|" + "---|" * len(FUNNEL_HEADER),
            ]
            out += [
                "| "
                + " | ".join(f"{n:,}" for n in (r, f.problems, f.generated, f.answered, f.correct, f.unique))
                + f" | {f.selected:,} |"
                for r, f in funnels
            ]
        disagreements = [rs.grader_disagreements for rs in status.rounds if rs.grader_disagreements]
        if disagreements:
            out += ["", f"Graders disagreed on {sum(disagreements)} samples in all (see each round's score.json)."]
        if status.message:
            out += ["", f"Last message: {status.message}"]
        out.append("")
    return "\n".join(out)


def figure(runs: Sequence[tuple[SelfImprovementRun, RunStatus]]):
    """The report's matplotlib figure: Pass@1 and Pass@k per round (left), the correct share of each round's
    train samples (right), a title that says what changed, one legend below the plots, and a caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 6.2))
    handles, ks, tests = [], set(), set()
    for run, status in runs:
        rounds = [rs for rs in status.rounds if rs.pass1 is not None]
        ks.update(rs.k for rs in rounds if rs.k)
        tests.update(rs.test_problems for rs in rounds if rs.test_problems)
        xs = [rs.round for rs in rounds]
        (line,) = ax1.plot(xs, [100 * rs.pass1 for rs in rounds], marker="o")
        ax1.plot(xs, [100 * (rs.passk or 0) for rs in rounds], marker="s", linestyle="--", color=line.get_color(),
                 alpha=0.6)  # fmt: skip
        funnels = [rs for rs in status.rounds if rs.funnel]
        ax2.plot(
            [rs.round for rs in funnels],
            [rs.funnel.correct / max(rs.funnel.generated, 1) * 100 for rs in funnels],
            marker="o",
            color=line.get_color(),
        )
        strategy = run.spec.select.strategy
        label = f"{run.name} ({strategy.value}): trained on {KEEPS[strategy]}"
        handles.append(Line2D([], [], color=line.get_color(), marker="o", label=label))
    k = "/".join(str(x) for x in sorted(ks)) or "k"
    handles += [
        Line2D([], [], color="gray", marker="o", label="Pass@1 (solid)"),
        Line2D([], [], color="gray", marker="s", linestyle="--", alpha=0.6, label=f"Pass@{k} (dashed)"),
    ]
    on = f"{'/'.join(str(x) for x in sorted(tests))} test problems" if tests else "the test problems"
    ax1.set(xlabel="round r (the model after r rounds of training)", ylabel=f"% of {on}", title="Evaluation")
    ax2.set(xlabel="round r", ylabel="% of the round's train samples", title="Correct share of the train samples")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    strategies = {run.spec.select.strategy for run, _ in runs}
    if len(runs) == 1:
        title = f"Think, Prune, Train: {runs[0][0].name}"
    elif len(strategies) > 1:
        names = " vs ".join(s.value for s in sorted(strategies, key=lambda s: s.value))
        title = f"Think, Prune, Train: Pass@1 round over round, {names}"
    else:
        title = "Think, Prune, Train: " + " vs ".join(run.name for run, _ in runs)
    fig.suptitle(title, fontsize=13, fontweight="bold", y=0.985)
    said = [x for x in (outcome(run, status) for run, status in runs) if x]
    fig.text(0.5, 0.925, "\n".join(said) or "fewer than two rounds evaluated yet", ha="center", va="top", fontsize=9)
    caption = (
        "Round r evaluates the model after r rounds of think (sample its own solutions to the train problems), "
        "prune (keep what the strategy keeps), train (fine-tune on one kept sample per problem); round 0 is the "
        "starting model. Every round is evaluated on the same test problems."
    )
    if strategies >= {PruneStrategy.ground_truth, PruneStrategy.none}:
        caption += (
            " The paper's finding (its Table 5): training on verified-correct samples lifts Pass@1 round over "
            "round; training on unpruned samples does not."
        )
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.1), ncol=2, fontsize=8, frameon=False)
    fig.text(0.5, 0.012, textwrap.fill(caption, 150), ha="center", va="bottom", fontsize=8, color="dimgray")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.80, bottom=0.29, wspace=0.22)
    return fig


def plot(runs: Sequence[tuple[SelfImprovementRun, RunStatus]]) -> bytes:
    import matplotlib.pyplot as plt

    fig = figure(runs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(store: Store, run: SelfImprovementRun, status: RunStatus) -> None:
    store.write_text(layout.REPORT_MD, markdown([(run, status)]))
    store.write_bytes(layout.REPORT_PNG, plot([(run, status)]))
