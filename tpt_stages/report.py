"""The run report: a per-round table (`report.md`) and a plot (`report.png`) of Pass@1 and Pass@k per round
and the pruning funnel. Several runs (for example pruned vs unpruned) can be drawn on one picture."""

from __future__ import annotations

import io
from collections.abc import Sequence

from tpt_stages import layout
from tpt_stages.spec import SelfImprovementRun
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
        funnels = [(rs.round, rs.funnel) for rs in status.rounds if rs.funnel]
        if funnels:
            out += [
                "",
                "Pruning funnel (train samples): problems → generated → answered → correct → unique → selected",
                "",
            ]
            out += [
                f"- round {r}: {f.problems} → {f.generated} → {f.answered} → {f.correct} → {f.unique} → {f.selected}"
                for r, f in funnels
            ]
        disagreements = [rs.grader_disagreements for rs in status.rounds if rs.grader_disagreements]
        if disagreements:
            out += ["", f"Graders disagreed on {sum(disagreements)} samples in all (see each round's score.json)."]
        if status.message:
            out += ["", f"Last message: {status.message}"]
        out.append("")
    return "\n".join(out)


def plot(runs: Sequence[tuple[SelfImprovementRun, RunStatus]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run, status in runs:
        rounds = [rs for rs in status.rounds if rs.pass1 is not None]
        xs = [rs.round for rs in rounds]
        label = f"{run.name} ({run.spec.select.strategy.value})"
        (line,) = ax1.plot(xs, [100 * rs.pass1 for rs in rounds], marker="o", label=f"{label} Pass@1")
        ax1.plot(
            xs,
            [100 * (rs.passk or 0) for rs in rounds],
            marker="s",
            linestyle="--",
            color=line.get_color(),
            alpha=0.6,
            label=f"{label} Pass@{rounds[0].k if rounds else 'k'}",
        )
        funnels = [rs for rs in status.rounds if rs.funnel]
        ax2.plot(
            [rs.round for rs in funnels],
            [rs.funnel.correct / max(rs.funnel.generated, 1) * 100 for rs in funnels],
            marker="o",
            color=line.get_color(),
            label=f"{label}: correct / generated",
        )
    ax1.set(xlabel="round (model M_r)", ylabel="% of test problems", title="Evaluation")
    ax2.set(xlabel="round", ylabel="% of train samples", title="Pruning: correct share of samples")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(store: Store, run: SelfImprovementRun, status: RunStatus) -> None:
    store.write_text(layout.REPORT_MD, markdown([(run, status)]))
    store.write_bytes(layout.REPORT_PNG, plot([(run, status)]))
