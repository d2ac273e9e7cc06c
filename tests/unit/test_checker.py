"""The drill checker on synthetic sequences: a wrong count must not pass. Pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.drill.checker import Received, Sent, check, guarantees_broken


def sent(n: int, channel: str = "c", every: float = 0.01, start: float = 100.0) -> list[Sent]:
    return [Sent("r", channel, i, start + i * every) for i in range(n)]


def arrived(messages: list[Sent], delay: float = 0.002, epoch: int = 1) -> list[Received]:
    return [Received(m.route, m.channel, m.seq, m.at + delay, "n1", epoch, "s") for m in messages]


def test_everything_forwarded_is_clean() -> None:
    out = sent(500)
    report = check(out, arrived(out), fault_at=102.0)["r"]
    assert (report.sent, report.forwarded, report.lost, report.duplicated) == (500, 500, 0, 0)
    assert report.reordered == 0 and report.epoch_overlap == 0
    assert report.gap is not None and report.gap < 0.02
    assert report.rate_back == 0.0
    assert guarantees_broken(report, may_lose=False, max_gap=1.0) == []


def test_jittery_write_times_without_a_loss_are_no_slow_recovery() -> None:
    """Sink write times that bunch up (here: every other bucket's messages written in
    the next one) must not read as a rate that took seconds to come back."""
    out = sent(1000, every=0.005)  # 100.00 .. 104.995
    bunched = [
        Received(
            m.route, m.channel, m.seq, m.at + (0.2 if int(m.at * 4) % 2 else 0.002), "n", 1, "s"
        )
        for m in out
    ]
    report = check(out, bunched, fault_at=101.0)["r"]
    assert report.lost == 0 and report.gap is not None and report.gap < 0.25
    assert report.rate_back == 0.0


def test_a_gap_is_measured_and_its_losses_located() -> None:
    out = sent(500)  # 100.00 .. 104.99
    lost = {m.seq for m in out if 102.0 <= m.at < 103.5}
    new_owner = [Received(m.route, m.channel, m.seq, m.at + 0.002, "n2", 2, "s") for m in out[350:]]
    got = arrived([m for m in out if m.seq not in lost and m.seq < 350]) + new_owner
    report = check(out, got, fault_at=102.0, recovered_at=103.6)["r"]
    assert report.lost == len(lost) == 150
    assert (report.lost_from, report.lost_until) == (102.0, out[349].at)
    assert report.gap is not None and 1.49 < report.gap < 1.52
    assert report.rate_back is not None and 1.25 <= report.rate_back <= 1.75
    assert report.writers == ["n1@1", "n2@2"]
    assert guarantees_broken(report, may_lose=True, max_gap=5.0) == []
    assert guarantees_broken(report, may_lose=False, max_gap=5.0) == [
        "150 messages lost (this route may lose none)"
    ]
    assert "recovery" in guarantees_broken(report, may_lose=True, max_gap=1.0)[0]


def test_duplicates_reorderings_and_two_owners_are_counted() -> None:
    out = sent(100)
    got = arrived(out)
    got.append(Received("r", "c", 10, out[10].at + 0.003, "n2", 2, "s"))  # newer owner
    got.append(Received("r", "c", 11, out[11].at + 0.004, "n1", 1, "s"))  # old one again
    swapped = [
        Received("r", "c", 51, 200.0, "n1", 1, "s"),
        Received("r", "c", 50, 200.1, "n1", 1, "s"),
    ]
    got = [g for g in got if g.seq not in (50, 51)] + swapped
    report = check(out, got, fault_at=150.0)["r"]
    assert report.duplicated == 2
    assert report.epoch_overlap >= 1
    assert report.reordered >= 1
    broken = guarantees_broken(report, may_lose=True, max_gap=None)
    assert any("duplicates" in b for b in broken)
    assert any("older owner" in b for b in broken)
    assert any("out of order" in b for b in broken)
    streams = guarantees_broken(report, may_lose=False, max_gap=None, may_reorder=True)
    assert not any("out of order" in b for b in streams)


def test_losses_outside_the_disturbed_window_break_pubsub_too() -> None:
    out = sent(500)
    got = arrived([m for m in out if m.seq != 20])  # lost long before the fault
    report = check(out, got, fault_at=104.0, recovered_at=104.5)["r"]
    assert guarantees_broken(report, may_lose=True, max_gap=None) == [
        "messages lost outside the disturbed window"
    ]
    late = arrived([m for m in out if m.seq != 480])  # lost after recovery
    report = check(out, late, fault_at=102.0, recovered_at=103.0)["r"]
    assert guarantees_broken(report, may_lose=True, max_gap=None) != []


def test_the_gap_is_the_longest_stretch_of_missed_messages() -> None:
    """Lost and held-up messages both count; a pause of the load itself does not."""
    out = sent(1000)  # 100.00 .. 109.99
    lost = {m.seq for m in out if 102.0 <= m.at < 102.3}
    late = {m.seq for m in out if 104.0 <= m.at < 104.8}
    got = arrived([m for m in out if m.seq not in lost | late])
    got += arrived([m for m in out if m.seq in late], delay=1.0)
    report = check(out, got, fault_at=102.0, recovered_at=105.0)["r"]
    assert report.gap is not None and 0.8 < report.gap < 0.82
    quiet = [m for m in out if not 106.0 <= m.at < 108.0]  # the load sent nothing
    report = check(quiet, arrived(quiet), fault_at=106.0)["r"]
    assert report.gap == 0.0
    cut = arrived([m for m in out if m.at < 105.0])  # never forwarded again
    assert check(out, cut, fault_at=105.0)["r"].gap is None


@given(st.sets(st.integers(min_value=0, max_value=299)), st.integers(min_value=0, max_value=5))
def test_counts_add_up(dropped: set[int], doubled: int) -> None:
    out = sent(300)
    got = arrived([m for m in out if m.seq not in dropped])
    copies = got[:doubled]
    unsure = [Received("r", "c", 10_000, 150.0, "n1", 1, "s")]  # its send failed
    report = check(out, got + copies + unsure, fault_at=101.0)["r"]
    assert report.lost == len(dropped)
    assert report.forwarded + report.lost == report.sent
    assert report.duplicated == len(copies)
