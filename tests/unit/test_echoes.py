"""Echo suppression's ledger (issue 20): the copies a bridge published, awaited back.

The property that matters: whatever a deployment's publishers send, with the same
bytes as the bridge's copies or not, and however the copies interleave with them in
the one order a Redis node delivers, the reader forwards exactly the publishers'
messages as a multiset (which of two identical messages goes does not matter)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.forwarding.echoes import EchoBook, EchoLedger, echo_sides
from redis_forwarder.resp import RawMessage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def same(channel: bytes, _pattern: bytes) -> bytes:
    return channel


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=200),
    st.integers(1, 7),
)
def test_the_multiset_forwarded_is_exactly_what_publishers_sent(
    arrivals: list[tuple[bool, int]], batch: int
) -> None:
    """Each arrival is an echo (a copy the bridge published a moment before) or a
    publisher's message, with payloads from four values: the reader forwards exactly
    the publishers' ones, counted by payload."""
    ledger = EchoLedger(clock=Clock())
    heard: list[RawMessage] = []
    for is_echo, value in arrivals:
        message = (b"orders", b"p%d" % value, b"")
        if is_echo:
            ledger.sent([(b"orders", message[1])])  # published before it comes back
        heard.append(message)
    forwarded: list[RawMessage] = []
    for start in range(0, len(heard), batch):
        forwarded += ledger.heard(heard[start : start + batch])
    published = Counter(m[1] for (echo, _v), m in zip(arrivals, heard, strict=True) if not echo)
    assert Counter(m[1] for m in forwarded) == published
    assert len(ledger) == sum(1 for echo, _v in arrivals if echo)  # order kept until expiry


def test_another_channel_or_payload_is_no_echo() -> None:
    ledger = EchoLedger(clock=Clock())
    ledger.sent([(b"orders", b"1")])
    kept = ledger.heard([(b"audit", b"1", b""), (b"orders", b"2", b""), (b"orders", b"1", b"")])
    assert kept == [(b"audit", b"1", b""), (b"orders", b"2", b"")]


def test_a_copy_never_heard_is_forgotten_and_counted() -> None:
    clock = Clock()
    ledger = EchoLedger(ttl=10.0, clock=clock)
    ledger.sent([(b"c", b"x"), (b"c", b"x")])
    assert ledger.heard([(b"c", b"x", b"")]) == []  # one came back
    clock.now += 11
    assert ledger.sent([(b"c", b"y")]) == 1  # the other never did: forgotten, once
    assert ledger.heard([(b"c", b"x", b"")]) == [(b"c", b"x", b"")]  # a new message now
    clock.now += 11
    assert ledger.sent([]) == 1  # y
    assert len(ledger) == 0


def test_a_copy_heard_is_not_forgotten_again() -> None:
    clock = Clock()
    ledger = EchoLedger(ttl=10.0, clock=clock)
    ledger.sent([(b"c", b"x")])
    clock.now += 5
    ledger.sent([(b"c", b"x")])
    assert ledger.heard([(b"c", b"x", b"")]) == []  # the older copy
    clock.now += 6  # the older one's time is up, but it was heard
    assert ledger.sent([]) == 0
    clock.now += 5
    assert ledger.sent([]) == 1  # the younger one, unheard


def test_a_tasks_two_sides_are_the_book_s_two_ledgers_for_its_pair() -> None:
    """West->east records into (east, west) what it publishes, under its sink's
    names; east->west hears from (east, west): the pair shares one node's book."""
    book = EchoBook()
    west_east = echo_sides(book, ("west", "east"), lambda c, _p: b"from-west." + c)
    east_west = echo_sides(book, ("east", "west"), same)
    assert west_east is not None and east_west is not None
    assert west_east.left([(b"orders", b"1", b"")]) == 0
    assert east_west.heard([(b"from-west.orders", b"1", b""), (b"orders", b"1", b"")]) == [
        (b"orders", b"1", b"")
    ]
    assert east_west.suppressed == 1
    assert echo_sides(None, ("a", "b"), same) is None


def test_a_copy_whose_time_is_up_hides_nothing_while_the_writer_is_idle() -> None:
    """Nothing sent for longer than the TTL: the reader forgets the stale copy itself
    (it would hide a new message of the same bytes), and the next send reports it."""
    clock = Clock()
    ledger = EchoLedger(ttl=10.0, clock=clock)
    ledger.sent([(b"c", b"x")])
    clock.now += 11
    assert ledger.heard([(b"c", b"x", b"")]) == [(b"c", b"x", b"")]
    assert ledger.sent([]) == 1
    assert len(ledger) == 0
