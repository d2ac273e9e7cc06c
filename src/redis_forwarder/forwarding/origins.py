"""Stream entries that carry where they were first written, so that a two-way bridge
never sends an entry back (issue 20). Pure.

A route with ``to.origin = true`` stamps each entry it forwards with ``origin`` (the
name, in the config, of the deployment it reads, where the entry was first written)
and ``origin-id`` (its id there), unless the entry already carries them (it came from
further away: they stay as they are), and counts its ``hops``. The route of the other
direction, reading those entries where they arrived, skips (acknowledges, counts) each
one whose origin is the deployment it writes: the entry came from there. A hop limit
is the last line of defence against a cycle the origins cannot see (three
deployments, or a config of another fleet): an entry that has crossed ``max_hops``
bridges is dropped, counted and logged.

MirrorMaker 2 breaks loops by renaming; RedisShake cannot break them at all. Here the
names stay: consumers read the same stream names on both sides, with the entries
they would have read, plus these three fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from redis_forwarder.source.streams import Entry

ORIGIN = b"origin"
ORIGIN_ID = b"origin-id"
HOPS = b"hops"


class Fate(Enum):
    FORWARD = "forward"
    CAME_FROM_THERE = "came from the target"  # skipped: it would go back where it began
    TOO_MANY_HOPS = "over the hop limit"


@dataclass(frozen=True)
class Origins:
    here: bytes  # the deployment the route reads (its name in the config)
    there: bytes  # the deployment it writes
    max_hops: int

    def fate(self, entry: Entry) -> tuple[Fate, Entry]:
        """What becomes of ``entry``, and the entry to write (stamped) if forwarded."""
        stream, entry_id, fields = entry
        origin: bytes | None = None
        hops, hops_at = 0, -1
        for index in range(0, len(fields) - 1, 2):
            name = fields[index]
            if name == ORIGIN:
                origin = fields[index + 1]
            elif name == HOPS:
                value = fields[index + 1]
                hops, hops_at = (int(value) if value.isdigit() else 0), index + 1
        if origin == self.there:
            return Fate.CAME_FROM_THERE, entry
        if hops >= self.max_hops:
            return Fate.TOO_MANY_HOPS, entry
        stamped = list(fields)
        if origin is None:
            stamped += [ORIGIN, self.here, ORIGIN_ID, entry_id]
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
