"""The standby's ring and the owner's watermark (issue 15): where a takeover replays from.

The property that matters: whatever the owner wrote last (the watermark), the replay
starts at or before the first message the owner did not write: duplicates, never loss.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.resp import RawMessage
from redis_forwarder.standby.marks import DIGESTS, Marks, Watermark, digest
from redis_forwarder.standby.ring import Ring


def message(n: int, channel: bytes = b"c") -> RawMessage:
    return channel, b"m%d" % n, b""


def watermark_of(written: list[RawMessage]) -> Watermark:
    marks = Marks(b"k", every=0.0)
    command = marks.after(written)
    assert command is not None
    value = command.split(b"\r\n")[6]  # *6 $3 SET $1 k $N value ...
    return Watermark.decode(value)


def test_a_watermark_round_trips_and_refuses_garbage() -> None:
    mark = Watermark((1, 0xFFFFFFFF, 42), 7, 1234.5)
    assert Watermark.decode(mark.encode()) == mark
    for bad in (b"", b"2|1|1.0|a", b"1|x|1.0|a"):
        try:
            Watermark.decode(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} decoded")


def test_marks_are_throttled_but_a_final_one_always_comes() -> None:
    marks = Marks(b"k", every=3600.0)
    assert marks.after([message(1)]) is not None  # the first is due
    assert marks.after([message(2)]) is None  # too soon
    final = marks.final()
    assert final is not None and b"SET" in final
    assert marks.written == 2


def test_the_replay_starts_right_after_the_watermark() -> None:
    ring = Ring(window=60, max_bytes=1 << 20)
    sent = [message(n) for n in range(100)]
    for i in range(0, 100, 10):
        ring.add(sent[i : i + 10], now=1000.0 + i)
    replay = ring.replay(watermark_of(sent[:57]), now=1100.0)
    assert replay.found == "exact"
    assert replay.messages == sent[57:]
    assert replay.unaccounted == []


def test_repeated_messages_choose_duplicates_never_loss() -> None:
    ring = Ring(window=60, max_bytes=1 << 20)
    same = [message(0)] * 30  # a publisher that repeats itself
    ring.add(same, now=1.0)
    replay = ring.replay(watermark_of(same[:20]), now=2.0)
    assert len(replay.messages) >= 10  # at least what was not written
    assert replay.ambiguous > 0


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=200),
    st.integers(0, 199),
    st.integers(1, 20),
)
def test_never_loss_whatever_the_payloads(payloads: list[int], cut: int, batch: int) -> None:
    """Payloads drawn from a handful of values (many repeats): the replay is always a
    suffix of what the standby heard that covers everything the owner did not write."""
    sent = [message(p) for p in payloads]
    cut = min(cut, len(sent) - 1) + 1
    ring = Ring(window=60, max_bytes=1 << 30)
    for i in range(0, len(sent), batch):
        ring.add(sent[i : i + batch], now=10.0)
    replay = ring.replay(watermark_of(sent[:cut]), now=11.0)
    assert replay.messages == sent[len(sent) - len(replay.messages) :]
    assert len(replay.messages) >= len(sent) - cut


def test_another_nodes_interleaving_loses_and_duplicates_nothing() -> None:
    """A cluster replica hears PUBLISH from two masters in another interleaving than the
    owner's master: the one the owner had not written, heard by the standby among the
    ones it had, is replayed; the ones it had are not (the migrate-slots drill in CI)."""
    a = [message(n, b"a") for n in range(20)]
    b = [message(n, b"b") for n in range(20)]
    owner = [m for pair in zip(a, b, strict=True) for m in pair]  # a0 b0 a1 b1 ...
    heard = list(owner)
    heard[13], heard[14] = heard[14], heard[13]  # b6 before a7 on the standby's node
    ring = Ring(window=60, max_bytes=1 << 20)
    ring.add(heard, now=10.0)
    written = owner[:14]  # up to a7: b7 not yet, b6... written, but heard after a7
    replay = ring.replay(watermark_of(written), now=11.0)
    assert replay.found == "reordered"
    assert sorted(replay.messages) == sorted(owner[14:])


@given(st.lists(st.booleans(), min_size=2, max_size=120), st.data())
def test_adjacent_swaps_between_channels_are_replayed_exactly(
    channels: list[bool], data: st.DataObject
) -> None:
    """Two channels, each in its own order on every node, interleaved differently by
    swaps of neighbours: whatever the owner wrote (two messages at least: one alone
    cannot say which side of it a neighbour was), the replay has all it did not write
    and, of what it wrote, at most the one message swapped into the watermark's run
    (duplicates, never loss)."""
    counts = {True: 0, False: 0}
    owner = []
    for c in channels:
        owner.append(message(counts[c], b"a" if c else b"b"))
        counts[c] += 1
    heard = list(owner)
    i = 0
    while i < len(heard) - 1:
        if heard[i][0] != heard[i + 1][0] and data.draw(st.booleans()):
            heard[i], heard[i + 1] = heard[i + 1], heard[i]
            i += 1
        i += 1
    cut = data.draw(st.integers(2, len(owner)))
    ring = Ring(window=60, max_bytes=1 << 20)
    ring.add(heard, now=10.0)
    replay = ring.replay(watermark_of(owner[:cut]), now=11.0)
    assert replay.found in ("exact", "reordered")
    unwritten = owner[cut:]
    assert all(m in replay.messages for m in unwritten)
    assert len(replay.messages) - len(unwritten) <= 1


def test_a_ring_too_short_reports_the_span_it_cannot_account_for() -> None:
    ring = Ring(window=5, max_bytes=1 << 20)
    sent = [message(n) for n in range(100)]
    for n, m in enumerate(sent):
        ring.add([m], now=1000.0 + n)  # one a second: the ring keeps about 5
    assert ring.evicted > 90 and ring.messages <= 6
    written = watermark_of(sent[:10])
    mark = Watermark(written.digests, written.written, at=1009.0)  # the ring's clock
    replay = ring.replay(mark, now=1100.0)
    assert replay.found == "by time"
    assert replay.messages == sent[-ring.messages :]  # everything it has, in order
    assert replay.unaccounted == [(1009.0, 1094.0)]  # from the watermark to the ring


def test_bytes_cap_and_holes() -> None:
    ring = Ring(window=60, max_bytes=10 * (2 + 200 + 3))
    for n in range(50):
        ring.add([message(n)], now=1.0)
    assert ring.bytes <= ring.max_bytes and ring.evicted == 40
    ring.lost_subscription(now=2.0)
    ring.add([message(99)], now=3.0)
    replay = ring.replay(watermark_of([message(49)]), now=4.0)
    assert replay.messages == [message(99)]
    assert replay.unaccounted == [(2.0, 3.0)]


def test_the_digest_ignores_the_pattern_and_is_stable() -> None:
    assert digest((b"c", b"p", b"a.*")) == digest((b"c", b"p", b""))
    # A constant: the owner and the standby run in different processes (hash() is
    # salted per process; crc32 is not).
    assert digest((b"c", b"p", b"")) == 0x5F0C5BA7
    assert DIGESTS >= 4


def test_an_old_watermark_does_not_match_a_payload_repeated_later() -> None:
    """The watermark names "beat" written at t=100; the ring heard "beat" again at
    t=200, then real messages: matching the later "beat" would skip them."""
    ring = Ring(window=600, max_bytes=1 << 20)
    beat = (b"c", b"beat", b"")
    ring.add([beat, message(1), message(2)], now=200.0)
    written = watermark_of([beat])
    mark = Watermark(written.digests, written.written, at=100.0)
    replay = ring.replay(mark, now=201.0)
    assert replay.messages == [beat, message(1), message(2)]  # all of it, none skipped
    assert replay.found == "by time"


def test_a_bridge_standby_judging_twins_the_other_way_round_replays_neither() -> None:
    """A pub/sub bridge's standby keeps what it took for echoes, marked: the owner
    heard the same messages, but judged which of two identical ones was the echo the
    other way round. Its watermark is still found (in everything heard), and of the
    two identical messages neither is replayed (one written, one an echo)."""
    a, b, c, d, e = (message(n) for n in range(5))
    x1, x2 = message(9), message(9)  # the same bytes: an echo and a publisher's
    heard = [a, x1, b, x2, c, d, e]
    ring = Ring(window=60, max_bytes=1 << 20)
    ring.add(heard, now=10.0, echoes=frozenset({1}))  # the standby dropped x1
    owner_wrote = [a, x1, b, c]  # the owner dropped x2 instead
    replay = ring.replay(watermark_of(owner_wrote), now=11.0)
    assert replay.found in ("exact", "reordered")
    assert replay.messages == [d, e]


def test_echoes_are_never_replayed_and_do_not_hide_the_watermark() -> None:
    sent = [message(n) for n in range(40)]
    echoes = frozenset(range(1, 40, 3))  # every third one an echo, in between
    ring = Ring(window=60, max_bytes=1 << 20)
    ring.add(sent, now=10.0, echoes=echoes)
    written = [m for i, m in enumerate(sent[:30]) if i not in echoes]
    replay = ring.replay(watermark_of(written), now=11.0)
    assert replay.found == "exact"
    assert replay.messages == [m for i, m in enumerate(sent) if i >= 30 and i not in echoes]
    without_mark = ring.replay(None, now=11.0)
    assert without_mark.messages == [m for i, m in enumerate(sent) if i not in echoes]
