"""Showing a drill: a table for people, JSON for scripts, and a timeline picture
(sent and forwarded pub/sub messages per second, the events marked)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from redis_forwarder.drill.checker import BUCKET
from redis_forwarder.drill.labels import Flag, flag_text, stack_flags
from redis_forwarder.drill.result import DrillResult
from redis_forwarder.extras import require

if TYPE_CHECKING:  # matplotlib loads only when a picture is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

# Event labels, in points and pixels (the pictures are drawn at 100 dpi).
LABEL_FONT = 7
POLE_PAD = 3.0  # between a pole and its label
LABEL_GAP = 16.0  # between two labels of a row: closer, two read as one sentence
TOP_PAD = 2.0  # above the first row
LABEL_BAND = 0.4  # at most this share of the axes' height holds labels


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
        for note in result.notes:
            out.print(f"{result.scenario}: {note}", markup=False, highlight=False)
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
    import matplotlib.pyplot as plt

    figure = draw_timeline(result)
    figure.savefig(path)
    plt.close(figure)
    return path


def draw_timeline(result: DrillResult) -> Figure:
    """The drill's picture on a new figure (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    plot_rates(axes, result.timeline, result.timeline_route)
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel("messages per second")
    verdict = "ok" if result.passed else "BROKEN"
    axes.set_title(f"drill {result.scenario}: {verdict}", loc="left")
    legend_above(axes)
    figure.tight_layout()
    marks = [Mark(at - result.started_at, shortened(what, 60)) for at, what in result.events]
    mark_events(axes, marks)
    return figure


def shortened(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis saying when some were cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def legend_above(axes: Axes) -> None:
    """The legend above the axes, right of a left-aligned title: inside, it covered the
    labels at the top and the curves at the bottom."""
    axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)


@dataclass(frozen=True)
class Mark:
    at: float  # seconds on the picture's time axis
    text: str
    colour: str = "black"


def mark_events(axes: Axes, marks: Sequence[Mark], *, poles: bool = True) -> None:
    """Each mark as a flag at its true time: a grey pole (``poles``) up to its label, the
    labels stacked in rows at the top so none hides another (``drill.labels``), and the
    y axis raised so the curves stay below the labels. Call it once the figure's layout
    is done: the labels' widths in seconds hold for the axes' size then."""
    if not marks:
        return
    lines = [axes.axvline(m.at, color="grey", linewidth=0.8) for m in marks] if poles else []
    lo, hi = axes.get_xlim()
    axes.set_xlim(lo, hi)  # freeze the span the poles asked for: the widths are measured in it
    texts = [_label(axes, mark) for mark in marks]
    band = _Band.of(axes, texts, hi - lo)
    flags = stack_flags(
        [m.at for m in marks],
        [band.seconds(band.width(t) + POLE_PAD) for t in texts],
        lo=lo,
        hi=hi,
        gap=band.seconds(LABEL_GAP),
        rows=band.rows,
        more=band.seconds(band.width(_label(axes, Mark(0.0, " (+99 more)")), gone=True)),
    )
    bottom = band.top(max(flag.row for flag in flags) + 1)
    for flag in flags:
        _hang(flag, [m.text for m in marks], texts, band)
        for member in flag.members:
            if member != flag.shown:
                texts[member].remove()  # named by the flag's "+N more"
        for member in flag.members if lines else ():
            # a pole reaches its label; one whose event only the "+N more" names stops under
            # the labels, where it crosses none
            lines[member].set_ydata([0.0, band.top(flag.row) if member == flag.shown else bottom])
    floor, ceiling = axes.get_ylim()
    axes.set_ylim(floor, floor + (ceiling - floor) / bottom)  # the curves under the labels


@dataclass(frozen=True)
class _Band:
    """The label band's geometry, in the axes' pixels as laid out."""

    renderer: Any
    per_pixel: float  # seconds
    height: float  # the axes'
    row: float  # one row of labels

    @classmethod
    def of(cls, axes: Axes, texts: Sequence[Text], span: float) -> _Band:
        renderer = axes.figure.canvas.get_renderer()  # type: ignore[attr-defined]
        box = axes.get_window_extent(renderer)
        row = max(t.get_window_extent(renderer).height for t in texts) + 1.0
        return cls(renderer, span / box.width, box.height, row)

    @property
    def rows(self) -> int:
        return max(1, int(LABEL_BAND * self.height / self.row))

    def width(self, text: Text, *, gone: bool = False) -> float:
        """A text's width in pixels (``gone``: a text drawn only to be measured)."""
        width = float(text.get_window_extent(self.renderer).width)
        if gone:
            text.remove()
        return width

    def seconds(self, pixels: float) -> float:
        return pixels * self.per_pixel

    def top(self, row: int) -> float:
        """A row's top, as a share of the axes' height."""
        return 1.0 - (TOP_PAD + row * self.row) / self.height


def _hang(flag: Flag, labels: Sequence[str], texts: Sequence[Text], band: _Band) -> None:
    """The flag's text beside its pole, in its row."""
    text = texts[flag.shown]
    text.set_text(flag_text(labels, flag))
    right = flag.side == "right"
    text.set_x(flag.x + band.seconds(POLE_PAD if right else -POLE_PAD))
    text.set_y(band.top(flag.row))
    text.set_horizontalalignment("left" if right else "right")


def _label(axes: Axes, mark: Mark) -> Text:
    from matplotlib import patheffects

    return axes.text(
        mark.at,
        1.0,
        mark.text,
        transform=axes.get_xaxis_transform(),  # x in seconds, y in the axes' height
        fontsize=LABEL_FONT,
        va="top",
        ha="left",
        color=mark.colour,
        # a white edge round the letters: a curve or a span under a label leaves it legible
        path_effects=[patheffects.withStroke(linewidth=2, foreground="white")],
    )
