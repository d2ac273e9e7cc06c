"""Waiting, after the load stopped, for the last copies on their way to the sinks, so the
drill reads back what arrived rather than what happened to arrive within a fixed span.

The wait ends when every message sent is in its lane's sink (the usual case: it returns
as soon as the forwarders caught up), or when no new copy of the run has landed anywhere
for ``QUIET`` seconds: pub/sub may lose messages inside the fault and a dead master may
take stream entries with it (``sinks.kept_by_source``), and those never arrive. Either
way it is bounded by ``ARRIVAL_TIMEOUT``; what is still missing then is the checker's to
count, not this wait's to hide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from redis_forwarder.drill.checker import Sent
from redis_forwarder.drill.workload import Lane
from redis_forwarder.retry import Deadline

# The drills used to sleep this long (a fixed 1 s) and found everything that would
# arrive: a lull this long after the last arrival means the rest is not coming.
QUIET = 1.0
ARRIVAL_TIMEOUT = 20.0  # a forwarder still catching up after this is a finding itself
POLL = 0.1
PAGE = 10_000


class _LaneCopies:
    """This run's sequence numbers seen in one lane's sink so far, read incrementally
    (each poll asks only for entries after the last one read: sink ids only grow)."""

    def __init__(self, run: str, lane: Lane, client: redis.Redis) -> None:
        self.lane = lane
        self.seen: set[int] = set()
        self._client = client
        self._after = "-"
        self._run = run.encode()
        self._prefix = f"{run} ".encode()

    def read(self) -> int:
        """Read what landed since the last call; returns how many copies of this run."""
        count = 0
        while True:
            page: Any = self._client.xrange(
                self.lane.sink_key, min=self._after, max="+", count=PAGE
            )
            if not page:
                return count
            for _entry_id, fields in page:
                seq = self._seq(fields)
                if seq is not None:
                    self.seen.add(seq)
                    count += 1
            self._after = "(" + page[-1][0].decode()  # exclusive: after the last one read

    def _seq(self, fields: dict[bytes, bytes]) -> int | None:
        if self.lane.stream:
            return int(fields[b"seq"]) if fields.get(b"run") == self._run else None
        payload = fields.get(b"payload", b"")
        return int(payload.split(b" ", 2)[1]) if payload.startswith(self._prefix) else None


def wait_for_arrivals(
    run: str,
    lanes: tuple[Lane, ...],
    sent: list[Sent],
    sink_for: Callable[[Lane], redis.Redis],
    quiet: float = QUIET,
) -> str:
    """Poll the lanes' sinks until all of ``sent`` is there, or nothing new landed for
    ``quiet`` seconds, or ``ARRIVAL_TIMEOUT`` passed; returns which, for the events."""
    expected: dict[str, set[int]] = {lane.label: set() for lane in lanes}
    for message in sent:
        expected.setdefault(message.channel, set()).add(message.seq)
    copies = [_LaneCopies(run, lane, sink_for(lane)) for lane in lanes]
    deadline = Deadline(ARRIVAL_TIMEOUT)
    started = last_arrival = time.monotonic()
    while True:
        if sum(c.read() for c in copies):
            last_arrival = time.monotonic()
        missing = sum(len(expected[c.lane.label] - c.seen) for c in copies)
        waited = time.monotonic() - started
        if not missing:
            return f"every message sent is in the sinks ({waited:.2f}s after the load stopped)"
        if time.monotonic() - last_arrival >= quiet:
            return f"sinks quiet for {quiet:.1f}s with {missing} messages not there"
        if deadline.expired:
            return f"sinks still receiving after {ARRIVAL_TIMEOUT:.0f}s, {missing} not there"
        time.sleep(POLL)  # polling, bounded by the deadline and the quiet span above
