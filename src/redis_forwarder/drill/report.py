"""Showing a drill: a table for people, JSON for scripts, and a timeline picture
(sent and forwarded pub/sub messages per second, the events marked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from redis_forwarder.drill.checker import BUCKET
from redis_forwarder.drill.result import DrillResult
from redis_forwarder.extras import require


def print_results(results: list[DrillResult]) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    table = Table(title="drills")
    for column in (
        "scenario", "route", "sent", "forwarded", "lost", "dup", "reordered",
        "old-owner writes", "replayed", "unaccounted s", "gap s", "rate back s", "verdict",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("scenario", "verdict") else "right")
    for result in results:
        for name, r in result.routes.items():
            table.add_row(
                result.scenario,
                name,
                str(r.sent),
                str(r.forwarded),
                str(r.lost),
                str(r.duplicated),
                str(r.reordered),
                str(r.epoch_overlap),
                str(r.replayed),
                f"{r.unaccounted_seconds:.2f}",
                "-" if r.gap is None else f"{r.gap:.2f}",
                "-" if r.rate_back is None else f"{r.rate_back:.2f}",
                "[green]ok[/green]" if result.passed else "[red]BROKEN[/red]",
            )
    out.print(table)
    for result in results:
        if result.replication_loss:
            out.print(
                f"{result.scenario}: {result.replication_loss} stream entries were lost by "
                "Redis replication itself (acknowledged by a master that died first)"
            )
        for problem in result.broken:
            out.print(f"[red]{result.scenario}: {problem}[/red]")


def write_report(results: list[DrillResult], directory: Path) -> list[Path]:
    """``drills.json`` and one ``SCENARIO.png`` timeline per drill."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "drills.json"]
    written[0].write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    for result in results:
        written.append(timeline(result, directory / f"{result.scenario}.png"))
    return written


def plot_rates(axes: Any, timeline: dict[str, dict[int, int]], route: str, **line: Any) -> None:
    """Sent and forwarded messages per second (a drill's and a campaign's picture)."""
    last = max((max(s, default=0) for s in timeline.values()), default=0)
    buckets = range(last + 1)  # empty buckets are zeros: a gap must show as one
    for name, style in (("sent", "-"), ("forwarded", "--")):
        series = timeline.get(name, {})
        axes.plot(
            [b * BUCKET for b in buckets],
            [series.get(b, 0) / BUCKET for b in buckets],
            style,
            label=f"{name}, {route} (msg/s)",
            **line,
        )


def timeline(result: DrillResult, path: Path) -> Path:
    require("matplotlib", "a drill timeline (--report)")
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    plot_rates(axes, result.timeline, result.timeline_route)
    for at, what in result.events:
        offset = at - result.started_at
        axes.axvline(offset, color="grey", linewidth=0.8)
        axes.annotate(
            what[:60],
            xy=(offset, 0.98),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=6,
            va="top",
            ha="right",
        )
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel("messages per second")
    verdict = "ok" if result.passed else "BROKEN"
    axes.set_title(f"drill {result.scenario}: {verdict}")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
