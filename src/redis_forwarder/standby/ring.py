"""The standby's ring: what it received while the owner forwarded, kept for a time window
and under a byte cap, and where to replay it from at a takeover (issue 15). Pure apart
from the clock it is handed.

Batches are kept as they were read (a list of messages each), not message by message:
appending is one operation per batch, and the digests that place a watermark are only
computed at a takeover. A hole (the standby lost its subscription for a while) is kept
in order with the batches, so that a replay that crosses one says what it could not
cover.

Finding the watermark (``replay``): the sequence of the owner's last digests, as one run
of consecutive messages in the ring. Where it matches more than once (repeated
identical messages), the earliest match is taken: duplicates, never loss, and the
extra matches are counted. Where it does not match as one run, the digests are looked
for as a set near the newest one ("reordered"): a cluster's nodes interleave PUBLISH
from different nodes differently (the bus, not the replication stream, carries it to a
replica), so a message the owner had not written may sit among the ones it had; the
replay starts at the earliest of them and leaves them out (a CI run of the
migrate-slots drill: the newest digest alone, as before, lost 1 and duplicated 1).
Failing that, the newest digest alone is looked for, earliest occurrence first
(counted as approximate). Where nothing matches,
the ring is replayed from shortly before the watermark's time (the owner's clock) and
the span the ring cannot account for is reported.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from redis_forwarder.resp import RawMessage
from redis_forwarder.standby.marks import MARK_EVERY, Watermark, digest

# When the watermark is not in the ring: replay what arrived from this long before its
# time (clocks of two hosts differ by this much at most, we assume: NTP keeps it ms).
CLOCK_MARGIN = 1.0
# What an owner wrote after its last watermark was read at most MARK_EVERY after it,
# and heard by its standby about when it was read: this much more covers the two
# servers' and clocks' difference on one network (beyond it, a rewritten message of a
# pub/sub bridge may go back once: forwarding/echoes.py).
REWRITE_SLACK = 0.05
REORDER_SLACK = 3  # a reordered watermark is looked for among 3x its messages
NONE: frozenset[int] = frozenset()
OWN_RING = "own ring"  # a yielding owner's ring: all of it unwritten (``forwarding.yielding``)
OVERHEAD = 200  # bytes per message beyond channel and payload: a tuple and three bytes
# objects, measured with tracemalloc (313 B for a 100 B payload on a 12 B channel)


@dataclass
class Hole:
    """The standby heard nothing from ``start`` to ``end`` (wall clock)."""

    start: float
    end: float | None = None


@dataclass
class Replay:
    """What a takeover writes, and what it found out on the way."""

    messages: list[RawMessage]
    # "exact", "reordered", "approximate", "by time", "no watermark", "empty ring", or
    # OWN_RING (a yielding owner took its task back)
    found: str
    ambiguous: int = 0  # other places the watermark matched (duplicates were chosen)
    unaccounted: list[tuple[float, float]] = field(default_factory=list)  # spans, wall clock
    # The first messages of ``messages`` the old owner may have written too: heard up to
    # MARK_EVERY (and a slack) after its watermark, when its next one was not yet due.
    maybe_written: int = 0

    @property
    def unaccounted_seconds(self) -> float:
        return sum(end - start for start, end in self.unaccounted)


class Ring:
    def __init__(self, window: float, max_bytes: int) -> None:
        self.window = window
        self.max_bytes = max_bytes
        # (when, a batch or a hole, bytes, the batch's positions a bridge took for echoes)
        self._items: deque[tuple[float, list[RawMessage] | Hole, int, frozenset[int]]] = deque()
        self.bytes = 0
        self.messages = 0
        self.evicted = 0  # messages that fell off (age or bytes): counted, never silent
        self.evicted_bytes = 0
        self._hole: Hole | None = None

    # -- the standby's side
    def add(self, batch: list[RawMessage], now: float, echoes: frozenset[int] = NONE) -> None:
        """``echoes``: positions in ``batch`` that a pub/sub bridge's standby took for
        the other direction's copies (``forwarding/echoes.py``): kept, to place the
        watermark by (the owner may have judged two identical messages the other way
        round), never replayed."""
        if self._hole is not None:
            self._hole.end = now
            self._hole = None
        size = sum(len(c) + len(p) for c, p, _ in batch) + OVERHEAD * len(batch)
        self._items.append((now, batch, size, echoes))
        self.bytes += size
        self.messages += len(batch)
        self._evict(now)

    def lost_subscription(self, now: float) -> None:
        """The standby stopped hearing (its connection failed): a hole from now until
        the next batch."""
        if self._hole is None:
            self._hole = Hole(now)
            self._items.append((now, self._hole, 0, NONE))

    def _evict(self, now: float) -> None:
        items = self._items
        while items and (self.bytes > self.max_bytes or items[0][0] < now - self.window):
            _at, batch, size, _echoes = items.popleft()
            if isinstance(batch, list):
                self.bytes -= size
                self.messages -= len(batch)
                self.evicted += len(batch)
                self.evicted_bytes += size

    def depth(self, now: float) -> float:
        """Seconds of traffic the ring reaches back."""
        return now - self._items[0][0] if self._items else 0.0

    # -- the takeover
    def replay(self, mark: Watermark | None, now: float) -> Replay:
        """Everything after ``mark``, in order (the whole ring without one), echoes
        left out."""
        timed: list[tuple[float, RawMessage]] = []
        holes: list[tuple[int, Hole]] = []
        echo: set[int] = set()
        for at, batch, _size, echoes in self._items:
            if isinstance(batch, Hole):
                holes.append((len(timed), batch))
            else:
                echo.update(len(timed) + i for i in echoes)
                timed.extend((at, m) for m in batch)
        messages = [m for _at, m in timed]
        if not messages:
            return Replay([], "empty ring", unaccounted=_spans(holes, 0, now))
        if mark is None or not mark.digests:
            replay = [m for i, m in enumerate(messages) if i not in echo]
            return Replay(replay, "no watermark", unaccounted=_spans(holes, 0, now))
        placed = None
        if echo:  # first as the owner should have seen it: without the echoes
            placed = _place([i for i in range(len(messages)) if i not in echo], timed, mark)
            placed = placed if placed is not None and placed[2] == "exact" else None
        if placed is None:  # then everything heard: what it wrote is in there, in order
            placed = _place(list(range(len(messages))), timed, mark)
        if placed is None:
            # Not in the ring: it reaches back too little, or it missed those messages.
            since = mark.at - CLOCK_MARGIN
            start = next((i for i, (at, _m) in enumerate(timed) if at >= since), len(timed))
            oldest = timed[0][0]
            spans = [(mark.at, oldest)] if oldest > mark.at else []
            replay = [messages[i] for i in range(start, len(messages)) if i not in echo]
            return Replay(replay, "by time", unaccounted=spans + _spans(holes, start, now))
        start, skip, found, ambiguous = placed
        kept = _not_written(messages, start, skip | echo)
        due = mark.at + MARK_EVERY + REWRITE_SLACK
        maybe = sum(1 for i in kept if timed[i][0] <= due)
        replay = [messages[i] for i in kept]
        return Replay(replay, found, ambiguous, _spans(holes, start, now), maybe)


def _not_written(
    messages: list[RawMessage], start: int, out: set[int] | frozenset[int]
) -> list[int]:
    """The positions from ``start`` on to replay: as many of each (channel, payload)
    as were heard there, less those in ``out`` (written by the owner, or echoes),
    counted per message, not by position: the owner and a bridge's standby may have
    judged two identical messages the other way round (one an echo, the other not), and
    which of two identical messages goes cannot be told, nor does it matter."""
    drop: dict[tuple[bytes, bytes], int] = {}
    for i in out:
        if i >= start:
            key = messages[i][0], messages[i][1]
            drop[key] = drop.get(key, 0) + 1
    if not drop:
        return list(range(start, len(messages)))
    kept: list[int] = []
    for i in range(start, len(messages)):
        key = messages[i][0], messages[i][1]
        left = drop.get(key, 0)
        if left:
            drop[key] = left - 1
            continue
        kept.append(i)
    return kept


def _place(
    view: list[int], timed: list[tuple[float, RawMessage]], mark: Watermark
) -> tuple[int, frozenset[int], str, int] | None:
    """The watermark in the ring's messages at the positions ``view``: where to start
    the replay, the positions after it the owner wrote all the same, how it was found,
    how many other places matched; None when it is not there. A message that reached
    the ring after the watermark was written (beyond the clock margin) cannot be one it
    names: an old watermark would match a repeated payload (a heartbeat) heard later,
    and skip what follows it."""
    latest = mark.at + CLOCK_MARGIN
    possible = sum(1 for i in view if timed[i][0] <= latest)
    start, skip, found, ambiguous = _locate([timed[i][1] for i in view], mark.digests, possible)
    if start is None:
        return None
    at = view[start] if start < len(view) else len(timed)
    return at, frozenset(view[i] for i in skip), found, ambiguous


def _locate(
    messages: list[RawMessage], digests: tuple[int, ...], possible: int
) -> tuple[int | None, frozenset[int], str, int]:
    """Where to start the replay, the messages after it the owner wrote all the same,
    how it was found, and how many other places matched; only the first ``possible``
    messages can be the watermark's last one."""
    ring = [digest(m) for m in messages[:possible]]
    k = len(digests)
    newest = digests[-1]
    ends = [
        i
        for i, d in enumerate(ring)
        if d == newest and i >= k - 1 and tuple(ring[i - k + 1 : i + 1]) == digests
    ]
    if ends:
        return ends[0] + 1, frozenset(), "exact", len(ends) - 1
    loose = [i for i, d in enumerate(ring) if d == newest]
    for n, end in enumerate(loose):
        written = _as_set(ring, digests, end)
        if written is not None:
            return min(written), written, "reordered", len(loose) - 1 - n
    if loose:
        return loose[0] + 1, frozenset(), "approximate", len(loose) - 1
    return None, frozenset(), "", 0


def _as_set(ring: list[int], digests: tuple[int, ...], end: int) -> frozenset[int] | None:
    """The positions of the watermark's digests, each matched once, nearest to
    ``end`` (where its newest is) first, on either side: the newest the owner wrote may
    have reached this node before older ones. None unless every one is within
    ``REORDER_SLACK`` times their number."""
    wanted: dict[int, int] = {}
    for d in digests[:-1]:
        wanted[d] = wanted.get(d, 0) + 1
    found = {end}
    missing = len(digests) - 1
    for distance in range(1, REORDER_SLACK * len(digests) + 1):
        for i in (end - distance, end + distance):
            if missing and 0 <= i < len(ring) and wanted.get(ring[i], 0) > 0:
                wanted[ring[i]] -= 1
                missing -= 1
                found.add(i)
        if not missing:
            return frozenset(found)
    return None


def _spans(holes: list[tuple[int, Hole]], start: int, now: float) -> list[tuple[float, float]]:
    """The holes that a replay from message ``start`` crosses (a hole at index ``i``
    sits before message ``i``)."""
    return [(hole.start, hole.end or now) for index, hole in holes if index >= start]
