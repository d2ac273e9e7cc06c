"""Event labels of the drill pictures (drill/labels.py, pure; and the drawn timeline):
events crowded within a second once wrote their labels over each other."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_forwarder.drill.labels import Flag, flag_text, stack_flags
from redis_forwarder.drill.report import draw_timeline, timeline
from redis_forwarder.drill.result import DrillResult

if TYPE_CHECKING:
    from matplotlib.lines import Line2D
    from matplotlib.transforms import Bbox

EPSILON = 1e-9


def stack(
    xs: Sequence[float],
    widths: Sequence[float],
    *,
    rows: int = 8,
    gap: float = 0.1,
    more: float = 0.5,
) -> list[Flag]:
    return stack_flags(xs, widths, lo=-1.0, hi=21.0, gap=gap, rows=rows, more=more)


def test_events_far_apart_keep_their_places_in_the_top_row() -> None:
    flags = stack([0.0, 5.0, 10.0], [2.0, 2.0, 2.0])
    assert [(f.x, f.row, f.start, f.end, f.side) for f in flags] == [
        (0.0, 0, 0.0, 2.0, "right"),
        (5.0, 0, 5.0, 7.0, "right"),
        (10.0, 0, 10.0, 12.0, "right"),
    ]
    assert [f.members for f in flags] == [(0,), (1,), (2,)]


def test_events_at_one_time_go_down_a_row_each() -> None:
    flags = stack([3.0, 3.0, 3.0], [2.0, 2.0, 2.0])
    assert [(f.x, f.row, f.shown) for f in flags] == [(3.0, 0, 0), (3.0, 1, 1), (3.0, 2, 2)]


def test_a_label_near_the_axis_end_hangs_left_of_its_pole() -> None:
    (flag,) = stack([20.0], [3.0])
    assert (flag.side, flag.start, flag.end) == ("left", 17.0, 20.0)


def test_a_pole_goes_round_another_label_while_a_row_is_clear() -> None:
    """C fits in the top row, but its pole would run through B's long label: one row
    deeper than B it crosses nothing. With no such row, the top row is still better than
    a merged flag."""
    xs, widths = [0.0, 0.5, 3.0], [1.0, 10.0, 1.0]
    assert [f.row for f in stack(xs, widths)] == [0, 1, 2]
    assert [f.row for f in stack(xs, widths, rows=2)] == [0, 1, 0]


def test_when_the_rows_run_out_a_flag_names_how_many_more_it_stands_for() -> None:
    flags = stack([3.0, 3.1, 3.2], [2.0, 2.0, 2.0], rows=1, more=0.5)
    assert [(f.shown, f.members) for f in flags] == [(0, (0, 1, 2))]
    assert flags[0].end - flags[0].start == pytest.approx(2.5)  # room kept for the suffix
    assert flag_text(["kill", "owner None", "owner fwd-2"], flags[0]) == "kill (+2 more)"


def test_a_flag_of_one_event_reads_its_label() -> None:
    (flag,) = stack([1.0], [1.0])
    assert flag_text(["kill -9 fwd-1"], flag) == "kill -9 fwd-1"


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        stack([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        stack([1.0], [1.0], rows=0)


events = st.lists(
    st.tuples(st.floats(0.0, 20.0), st.floats(0.05, 8.0)),  # (time, label width), seconds
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(1, 10), st.floats(0.0, 1.0), st.floats(0.0, 2.0))
def test_laid_out_labels_never_overlap_and_name_every_event(
    marks: list[tuple[float, float]], rows: int, gap: float, more: float
) -> None:
    xs, widths = [x for x, _ in marks], [w for _, w in marks]
    flags = stack(xs, widths, rows=rows, gap=gap, more=more)

    named = [member for flag in flags for member in flag.members]
    assert sorted(named) == list(range(len(xs)))  # each event once, none dropped
    assert [(f.x, f.shown) for f in flags] == sorted((f.x, f.shown) for f in flags)
    for flag in flags:
        assert flag.x == xs[flag.shown] and flag.shown in flag.members  # a pole at its time
        assert list(flag.members) == sorted(flag.members, key=lambda i: (xs[i], i))
        assert 0 <= flag.row < rows
        assert (flag.start if flag.side == "right" else flag.end) == flag.x
        room = widths[flag.shown] + (more if len(flag.members) > 1 else 0.0)
        assert flag.end - flag.start >= room - EPSILON
    for a in flags:
        for b in flags:
            if a is not b and a.row == b.row:
                assert a.end + gap <= b.start + EPSILON or b.end + gap <= a.start + EPSILON
    if rows >= len(xs):
        assert all(len(flag.members) == 1 for flag in flags)  # merged only for want of rows


# -- the drawn picture


def crowded_drill() -> DrillResult:
    """A kill-node drill whose six events fall within one second of twenty."""
    events = [
        (0.05, "kill -9 fwd-2 (owner of the drill task)"),
        (0.25, "drill@alpha: owner None epoch 4294967411"),
        (0.25, "drill-streams@alpha: owner None epoch 4294967413"),
        (0.6, "controller is now fwd-3"),
        (0.85, "drill@alpha: owner fwd-2 epoch 4294967411"),
        (0.95, "sinks quiet for 1.0s with 608 messages not there"),
    ]
    # 20 seconds of load, as a drill runs: the six labels crowd at its start
    rates = {
        "sent": dict.fromkeys(range(80), 40),
        "forwarded": {b: 40 * (b > 3) for b in range(80)},
    }
    return DrillResult(
        scenario="kill-node",
        description="",
        fault_at=100.0,
        events=[(100.0 + at, what) for at, what in events],
        routes={},
        replication_loss=0,
        broken=[],
        timeline=rates,
        started_at=100.0,
        timeline_route="drill@alpha",
    )


def first_x(line: Line2D) -> float:
    import numpy

    return float(numpy.asarray(line.get_xdata())[0])


def overlap(a: Bbox, b: Bbox) -> bool:
    return bool(a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1)


def test_a_crowded_timeline_draws_labels_apart_above_the_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the lab extra's
    import matplotlib.pyplot as plt

    result = crowded_drill()
    figure = draw_timeline(result)
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
        axes = figure.axes[0]
        labels = [t for t in axes.texts if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert len(labels) == 6  # room for every event's own label, none merged
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not overlap(a, b), "two event labels overlap"
        curves = [line for line in axes.lines if str(line.get_label()).startswith(("sent", "forw"))]
        highest = max(line.get_window_extent(renderer).y1 for line in curves)
        assert highest < min(box.y0 for box in boxes), "a curve runs under the labels"
        poles = sorted(first_x(line) for line in axes.lines if line not in curves)
        assert poles == pytest.approx([at - result.started_at for at, _ in result.events])
    finally:
        plt.close(figure)
    assert timeline(result, tmp_path / "kill-node.png").stat().st_size > 0
