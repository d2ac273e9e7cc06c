"""Echo suppression for two-way pub/sub bridges of the same channel names (issue 20).

Route west->east publishes ``orders`` in east; route east->west reads east's ``orders``
and hears that copy too: its echo, which must not go back to west. A pub/sub message
carries nothing to mark it with (consumers must see the payload unchanged), so each
node keeps a ledger per direction: the copies its writers published into one
deployment, awaited back by the readers of that deployment that write to where they
came from. A message heard whose (channel, payload) is awaited is an echo: dropped,
counted, and one awaited copy less.

Why a count is exact: Redis delivers one node's messages in one order to all its
subscribers, so if a publisher in east sends the same bytes as an echo in flight, the
reader drops whichever arrives first and forwards the other: west gets one copy, as
it should (east had two, one of them from west). The multiset delivered is exact; only
which of two identical messages went is not knowable, nor does it matter.

What makes it hold in a fleet: the writer and the reader must share the ledger, so
both directions of a bridge run on one node (the controller places a bridge group's
tasks together, ``coordination.assignment.plan``'s ``together``); and a standby does
what its owner does to the ledger, as if it wrote (``EchoSides.heard`` and ``left`` in
its ring's place), so that at a takeover the standby's ledger is the owner's and its
ring holds no echo. For that a standby must hear each original before its echo: it
listens where the owner reads (not on a replica: replication delayed the original
past the echo, and a kill test's takeover sent 5 of the other side's messages back
home; ``placements.py``), and Redis delivers the original to both subscribers before
the owner can even write the copy. A standby far behind (more than a read's worth
waiting on one socket) may still see an echo first: then the echo is kept and its
original, recorded as sent, hides the next identical message (bytes cannot tell the
twins apart); after a takeover that message may go back once: a duplicate, never a
cycle. At a takeover, the replay is looked at for echoes once more, and the first
messages the old owner may have written too (after its last watermark) are awaited a
second time (two copies of them come back). An awaited copy that never comes back
(the reader was not subscribed when it came; the write failed) is forgotten after
``ECHO_TTL`` and
counted as unheard: until then it could hide one identical message from the other
side (the exactness argument needs the echo to arrive).

Pure apart from the clock it is handed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis_forwarder.resp import RawMessage

# Seconds an awaited copy is kept: an echo comes back in milliseconds, or after a
# backlog in the reader's output buffer; past this it is forgotten (counted).
ECHO_TTL = 10.0

Key = tuple[bytes, bytes]  # (channel as published, payload)


class EchoLedger:
    """The copies published into one deployment, awaited from it: (channel, payload)
    -> how many. Copies of one key are taken oldest first, so counts are enough to
    forget the right ones: when a copy's time is up, it was heard if a copy of its key
    was heard since (``_heard_since``), else it is forgotten. (A deque of send times
    per key cost 800 bytes an awaited copy: 213 MB at full speed in the bench.)"""

    def __init__(self, ttl: float = ECHO_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._waiting: dict[Key, int] = {}  # copies not heard back yet
        self._heard_since: dict[Key, int] = {}  # heard, still in _order
        self._order: deque[tuple[float, Key]] = deque()  # every copy sent, oldest first
        self._forgotten = 0  # since the last ``sent``, which reports them

    def __len__(self) -> int:
        return len(self._order)

    def sent(self, keys: Sequence[Key]) -> int:
        """Copies published now; returns how many older ones were forgotten (here, or
        by ``heard`` since the last call)."""
        now = self.clock()
        if self._order:
            self._expire(now)
        forgotten, self._forgotten = self._forgotten, 0
        waiting, order = self._waiting, self._order
        for key in keys:
            waiting[key] = waiting.get(key, 0) + 1
            order.append((now, key))
        return forgotten

    def heard(self, batch: list[RawMessage]) -> list[RawMessage]:
        """``batch`` without the echoes it holds (each takes one awaited copy)."""
        waiting = self._waiting
        if not waiting:
            return batch
        order = self._order  # one whose time is up must not hide a new message
        if order[0][0] < self.clock() - self.ttl:
            self._expire(self.clock())
        heard_since = self._heard_since
        kept: list[RawMessage] = []
        for message in batch:
            key = (message[0], message[1])
            count = waiting.get(key)
            if count:
                if count == 1:
                    del waiting[key]
                else:
                    waiting[key] = count - 1
                heard_since[key] = heard_since.get(key, 0) + 1
                continue
            kept.append(message)
        return kept

    def _expire(self, now: float) -> None:
        """Forget the copies sent over ``ttl`` ago that never came back (counted)."""
        order, waiting, heard_since = self._order, self._waiting, self._heard_since
        oldest = now - self.ttl
        forgotten = 0
        while order and order[0][0] < oldest:
            _at, key = order.popleft()
            table = heard_since if key in heard_since else waiting
            count = table[key]
            if count == 1:
                del table[key]
            else:
                table[key] = count - 1
            forgotten += table is waiting
        self._forgotten += forgotten


class EchoBook:
    """A node's ledgers, one per direction: (deployment published into, deployment the
    copies came from), by the identities ``bridges.identities`` gives."""

    def __init__(self, ttl: float = ECHO_TTL) -> None:
        self.ttl = ttl
        self._ledgers: dict[tuple[str, str], EchoLedger] = {}

    def ledger(self, into: str, came_from: str) -> EchoLedger:
        found = self._ledgers.get((into, came_from))
        if found is None:
            found = self._ledgers[(into, came_from)] = EchoLedger(self.ttl)
        return found


@dataclass
class EchoSides:
    """One task's two sides: what it hears is checked against ``incoming`` (the copies
    the opposite direction published where it reads), what it writes is recorded in
    ``outgoing`` under its sink names (``render``)."""

    incoming: EchoLedger
    outgoing: EchoLedger
    render: Callable[[bytes, bytes], bytes]  # (channel, pattern) -> the channel published
    suppressed: int = 0  # echoes dropped
    unheard: int = 0  # copies this task published that never came back (forgotten)

    def heard(self, batch: list[RawMessage]) -> list[RawMessage]:
        kept = self.incoming.heard(batch)
        self.suppressed += len(batch) - len(kept)
        return kept

    def left(self, batch: Sequence[RawMessage]) -> int:
        """``batch`` is being published (or, by a standby, would be): its copies are
        awaited; returns how many older ones were forgotten unheard."""
        render = self.render
        forgotten = self.outgoing.sent([(render(c, p), m) for c, m, p in batch])
        self.unheard += forgotten
        return forgotten


def echo_sides(
    book: EchoBook | None, identities: tuple[str, str], render: Callable[[bytes, bytes], bytes]
) -> EchoSides | None:
    """The sides of a task of a route with ``to.echo = "suppress"`` reading deployment
    ``identities[0]`` and writing ``identities[1]``; None without a book."""
    if book is None:
        return None
    read, write = identities
    return EchoSides(book.ledger(read, write), book.ledger(write, read), render)
