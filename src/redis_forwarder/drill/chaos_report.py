"""Showing a chaos campaign: the faults and the routes as tables for people, the JSON
for scripts, and a timeline picture with every fault drawn as a span."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from redis_forwarder.drill.campaign_result import CampaignResult
from redis_forwarder.drill.nemesis import KINDS
from redis_forwarder.drill.report import Mark, legend_above, mark_events, plot_rates, shortened
from redis_forwarder.extras import require

COLOURS = {"nodes": "tab:red", "zookeeper": "tab:purple", "sink": "tab:olive", "source": "tab:blue"}


def print_campaign(result: CampaignResult) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    faults = Table(title=f"chaos: seed {result.seed}, {len(result.struck)} faults struck")
    for column in ("at s", "kind", "aim", "target", "hold s", "outcome"):
        faults.add_column(column, justify="right" if column.endswith(" s") else "left")
    for fault in result.faults:
        at = fault.at if fault.at is not None else result.started_at + fault.planned.at
        outcome = "ok" if fault.at is not None else f"skipped: {fault.skipped}"
        if fault.error:
            outcome = f"[red]heal failed: {fault.error}[/red]"
        faults.add_row(
            f"{at - result.started_at:.1f}", fault.planned.kind, fault.planned.aim,
            fault.victim, f"{fault.planned.hold:.1f}", outcome,
        )  # fmt: skip
    out.print(faults)
    routes = Table(title="routes over the whole campaign")
    for column in (
        "route", "sent", "forwarded", "lost", "lost to Redis", "dup", "dup explained",
        "reordered", "old-owner writes", "verdict",
    ):  # fmt: skip
        routes.add_column(column, justify="left" if column in ("route", "verdict") else "right")
    for name, r in result.routes.items():
        bad = any(problem.startswith(f"{name}:") for problem in result.broken)
        routes.add_row(
            name, str(r.sent), str(r.forwarded), str(r.lost), str(r.lost_to_redis),
            str(r.duplicated), str(r.duplicated_explained), str(r.reordered),
            str(r.epoch_overlap), "[red]BROKEN[/red]" if bad else "[green]ok[/green]",
        )  # fmt: skip
    out.print(routes)
    for name, r in result.routes.items():
        for run in r.lost_runs:
            where = (
                "inside a source fault's span"
                if run["to_redis"] == run["lost"]
                else "[red]outside Redis' own loss[/red]"
            )
            out.print(
                f"{name}: {run['lost']} lost, sent {run['from']:.1f}-{run['until']:.1f}s ({where})"
            )
    settled = "never" if result.settled_after_s is None else f"{result.settled_after_s:.1f}s"
    out.print(
        f"settled {settled} after the last fault; {len(result.exits)} unexpected exits; "
        f"{result.replication_loss} stream entries lost by Redis replication itself"
    )
    for problem in result.broken:
        out.print(f"[red]chaos: {problem}[/red]")
    out.print(f"the same schedule again: {result.replay}")


def write_campaign(result: CampaignResult, directory: Path) -> list[Path]:
    """``chaos.json`` and ``chaos.png`` (the timeline with the faults as spans)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "chaos.json"
    data.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return [data, picture(result, directory / "chaos.png")]


def picture(result: CampaignResult, path: Path) -> Path:
    require("matplotlib", "a chaos timeline (--report)")
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(14, 5), dpi=100)
    plot_rates(axes, result.timeline, result.timeline_route, linewidth=0.8)
    marks = []
    for fault in result.struck:
        assert fault.at is not None
        start = fault.at - result.started_at
        end = (fault.healed_at or fault.at) - result.started_at
        colour = COLOURS.get(KINDS[fault.planned.kind].resource, "grey")
        axes.axvspan(start, max(end, start + 0.3), color=colour, alpha=0.15)
        marks.append(Mark(start, shortened(f"{fault.planned.kind} {fault.victim}", 40), colour))
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel("messages per second")
    verdict = "ok" if result.passed else "BROKEN"
    title = f"chaos, seed {result.seed}: {len(result.struck)} faults, {verdict}"
    axes.set_title(title, loc="left")
    legend_above(axes)
    figure.tight_layout()
    # Each fault's label at its span's start, in rows that keep labels apart (a lane per
    # fault number, as before, let two faults a lap of lanes apart write over each other).
    mark_events(axes, marks, poles=False)  # the span's edge is the pole
    figure.savefig(path)
    plt.close(figure)
    return path
