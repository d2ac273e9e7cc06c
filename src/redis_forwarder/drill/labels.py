"""Where a timeline's event labels go, so that none hides another (pure: no matplotlib).

Each event keeps its true time: its label is a flag on a pole standing at that time,
the text hanging beside the pole in one of a few rows at the top of the axes (row 0 is
the top one). Events closer than a label's width go to deeper rows, like a staircase,
instead of moving along the time axis: a label never sits at a time it does not name.
No two labels overlap; and a flag goes to the first row where its pole (which reaches up
to its own row, so runs through the rows below) crosses no other label and no other pole
crosses its label, or, if no row is that clear, to the first row its label fits in.

Labels hang to the right of their pole; near the right end of the axis they hang to the
left, and those are stacked from the right so their poles do not cross each other's
labels either. Only when every row is full where a label would go does its event join
the flag of its neighbour (already placed, nearest in time), which then reads
"... (+N more)": nothing is dropped without a word, and the picture's lines still show
every event at its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Side = Literal["right", "left"]


@dataclass(frozen=True)
class Flag:
    """One label: the event it shows (``shown``, whose pole holds it at ``x``) and every
    event it names (``members``, indices into the input, in time order)."""

    x: float
    row: int
    start: float  # the label's extent along the time axis, pad beside the pole included
    end: float
    side: Side  # which side of its pole the text hangs on
    shown: int
    members: tuple[int, ...]


def stack_flags(
    xs: Sequence[float],
    widths: Sequence[float],
    *,
    lo: float,
    hi: float,
    gap: float,
    rows: int,
    more: float,
) -> list[Flag]:
    """Flags for events at ``xs`` whose labels are ``widths`` wide (all in seconds), on an
    axis from ``lo`` to ``hi``, with ``gap`` between two labels of a row, in at most
    ``rows`` rows. ``more`` is the width a " (+N more)" suffix needs: a label that ends up
    naming more events is laid out again with that room kept. Sorted by time."""
    if len(xs) != len(widths):
        raise ValueError(f"{len(xs)} events but {len(widths)} label widths")
    if rows < 1:
        raise ValueError("a label needs at least one row")
    roomy: set[int] = set()  # the events whose label keeps room for " (+N more)"
    while True:  # ends: ``roomy`` only grows, up to every event
        wide = [w + (more if i in roomy else 0.0) for i, w in enumerate(widths)]
        flags = _stack(xs, wide, lo, hi, gap, rows)
        joined = {flag.shown for flag in flags if len(flag.members) > 1}
        if joined <= roomy:
            return sorted(flags, key=lambda flag: (flag.x, flag.shown))
        roomy |= joined


def flag_text(texts: Sequence[str], flag: Flag) -> str:
    """What a flag reads: its own event, and how many more it stands for."""
    hidden = len(flag.members) - 1
    return texts[flag.shown] + (f" (+{hidden} more)" if hidden else "")


def _stack(
    xs: Sequence[float],
    widths: Sequence[float],
    lo: float,
    hi: float,
    gap: float,
    rows: int,
) -> list[Flag]:
    sides = {i: _side(xs[i], widths[i], lo, hi) for i in range(len(xs))}
    by_time = sorted(range(len(xs)), key=lambda i: (xs[i], i))
    # Right-hanging labels are stacked from the left, left-hanging ones from the right:
    # each new flag then only meets labels that hang away from it or above it.
    order = [i for i in by_time if sides[i] == "right"]
    order += [i for i in reversed(by_time) if sides[i] == "left"]
    placed: list[Flag] = []
    for i in order:
        width = widths[i]
        start, end = (xs[i], xs[i] + width) if sides[i] == "right" else (xs[i] - width, xs[i])
        candidate = Flag(xs[i], 0, start, end, sides[i], i, (i,))
        row = _first_free_row(placed, candidate, rows, gap)
        if row is not None:
            placed.append(Flag(xs[i], row, start, end, sides[i], i, (i,)))
        elif placed and placed[-1].side == sides[i]:
            placed[-1] = _joined(placed[-1], i, xs)
        else:  # the first left-hanging label finds no row: join the last right-hanging one
            nearest = max(range(len(placed)), key=lambda k: placed[k].x)
            placed[nearest] = _joined(placed[nearest], i, xs)
    return placed


def _side(x: float, width: float, lo: float, hi: float) -> Side:
    """Right of the pole, unless the label would run past the axis' end and fits left."""
    return "left" if x + width > hi and x - width >= lo else "right"


def _first_free_row(placed: list[Flag], new: Flag, rows: int, gap: float) -> int | None:
    """The first row clear of other labels and poles, else the first its label fits in
    (a pole through a label is a lesser harm than a deeper label band or a merged flag)."""
    for clear in (_apart, _labels_apart):
        for row in range(rows):
            if all(clear(old, _at_row(new, row), gap) for old in placed):
                return row
    return None


def _at_row(flag: Flag, row: int) -> Flag:
    return Flag(flag.x, row, flag.start, flag.end, flag.side, flag.shown, flag.members)


def _apart(a: Flag, b: Flag, gap: float) -> bool:
    """Whether two flags stand clear of each other: labels apart, and neither's pole
    through the other's label (a pole passes the rows below its own)."""
    return _labels_apart(a, b, gap) and not (_pole_crosses(a, b) or _pole_crosses(b, a))


def _labels_apart(a: Flag, b: Flag, gap: float) -> bool:
    """Whether two labels leave each other readable: in other rows, or ``gap`` apart."""
    return a.row != b.row or a.end + gap <= b.start or b.end + gap <= a.start


def _pole_crosses(pole: Flag, label: Flag) -> bool:
    return label.row >= pole.row and label.start < pole.x < label.end


def _joined(flag: Flag, event: int, xs: Sequence[float]) -> Flag:
    members = tuple(sorted((*flag.members, event), key=lambda i: (xs[i], i)))
    return Flag(flag.x, flag.row, flag.start, flag.end, flag.side, flag.shown, members)
