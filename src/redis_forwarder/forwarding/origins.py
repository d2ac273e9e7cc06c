"""Stream entries that carry where they were first written, so that a bridge never
sends an entry back (issue 20). Pure.

A route with ``to.origin = true`` stamps each entry it forwards with ``fwd-origin``
(the deployment where the entry was first written), ``fwd-origin-id`` (its id there),
``fwd-via`` (the deployment it is read from now: the last hop) and ``fwd-hops``;
an entry from further away keeps its origin. A bridge does not forward an entry that
began where it would go (``fwd-origin`` is its target), that has just come from there
(``fwd-via`` is its target: three deployments in a chain, A-B-C, where C's entry from
A would otherwise go back to B), or that is home again (``fwd-origin`` is where it is
read). A hop limit is the last line of defence against a cycle these cannot see
(another fleet's routes): an entry that has crossed ``max_hops`` bridges is dropped,
counted and logged. The fields have a prefix of their own: a producer's ``origin`` or
``hops`` is its data, never read as ours.

MirrorMaker 2 breaks loops by renaming; RedisShake cannot break them at all. Here the
names stay: consumers read the same stream names on both sides, with the entries they
would have read, plus these four fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from redis_forwarder.source.streams import Entry

ORIGIN = b"fwd-origin"
ORIGIN_ID = b"fwd-origin-id"
VIA = b"fwd-via"
HOPS = b"fwd-hops"
MAX_DIGITS = 4  # a hop count is at most 64 (to.max_hops); longer is not ours to parse


class Fate(Enum):
    FORWARD = "forward"
    # skipped: it began at the target, has just come from there, or is home again
    CAME_FROM_THERE = "came back"
    TOO_MANY_HOPS = "over the hop limit"


@dataclass(frozen=True)
class Origins:
    here: bytes  # the deployment the route reads (its name in the config)
    there: bytes  # the deployment it writes
    max_hops: int

    def fate(self, entry: Entry) -> tuple[Fate, Entry]:
        """What becomes of ``entry``, and the entry to write (stamped) if forwarded."""
        stream, entry_id, fields = entry
        origin = via = None
        hops, hops_at, via_at = 0, -1, -1
        for index in range(0, len(fields) - 1, 2):
            name = fields[index]
            if name == ORIGIN:
                origin = fields[index + 1]
            elif name == VIA:
                via, via_at = fields[index + 1], index + 1
            elif name == HOPS:
                value = fields[index + 1]
                ours = value.isdigit() and len(value) <= MAX_DIGITS
                hops, hops_at = (int(value) if ours else self.max_hops), index + 1
        if (origin is not None and self.there in (origin, via)) or origin == self.here:
            return Fate.CAME_FROM_THERE, entry
        if hops >= self.max_hops:
            return Fate.TOO_MANY_HOPS, entry
        stamped = list(fields)
        if origin is None:
            stamped += [ORIGIN, self.here, ORIGIN_ID, entry_id]
        if via_at >= 0:
            stamped[via_at] = self.here
        else:
            stamped += [VIA, self.here]
        if hops_at >= 0:
            stamped[hops_at] = b"%d" % (hops + 1)
        else:
            stamped += [HOPS, b"1"]
        return Fate.FORWARD, (stream, entry_id, stamped)

    def sort(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry], list[Entry]]:
        """The entries to write (stamped), those that came from the target, and those
        over the hop limit (both acknowledged by the caller, not written)."""
        forward: list[Entry] = []
        back: list[Entry] = []
        over: list[Entry] = []
        for entry in entries:
            fate, written = self.fate(entry)
            if fate is Fate.FORWARD:
                forward.append(written)
            elif fate is Fate.CAME_FROM_THERE:
                back.append(entry)
            else:
                over.append(entry)
        return forward, back, over
