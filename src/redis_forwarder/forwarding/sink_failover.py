"""What a stream task's sink lost in a failover: the last entries it acknowledged on
one sink master, looked for on the next one.

A Sentinel failover promotes a replica without waiting for it; what the demoted master
acknowledged past that point is erased when it resyncs (issue 14). Those entries were
acknowledged at the source too: nothing retries them. Without ``to.wait`` they cannot be
saved, but they can be counted: with copied ids the sink id is the source id, so the
last :data:`REMEMBERED` ids acknowledged per sink key are XRANGEd on the new master when
the sink's address changes, and those it lacks are counted (a lower bound: only the
remembered tail is looked for) and logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from redis_forwarder.resp import ReplyError, encode
from redis_forwarder.sink.replication import UNREPLICATED
from redis_forwarder.sink.streams import StreamSink
from redis_forwarder.source.streams import Entry

REMEMBERED = 1000  # acknowledged ids per sink key looked for after a failover


class AckedTail:
    """The newest acknowledged ids per sink key, and the sink they were written to."""

    def __init__(self, key_of: Callable[[bytes], bytes]) -> None:
        self.key_of = key_of
        self.sink = ""
        self.ids: dict[bytes, deque[bytes]] = {}

    def note(self, entries: Sequence[Entry], replies: Sequence[object]) -> None:
        """The sink's answers to one batch: remember what it took (bounded per batch)."""
        for entry, reply in zip(entries[-REMEMBERED:], replies[-REMEMBERED:], strict=True):
            if reply is not UNREPLICATED and not isinstance(reply, ReplyError):
                key = self.key_of(entry[0])
                tail = self.ids.get(key)
                if tail is None:
                    tail = self.ids[key] = deque(maxlen=REMEMBERED)
                tail.append(entry[1])

    async def missing_on(self, sink: StreamSink, where: str) -> tuple[int, int, str]:
        """Connected to the sink at ``where``: if it is another server than the one the
        remembered ids were acknowledged on, how many of them it lacks, of how many,
        and the old server (then forget them: they belong to the old master)."""
        old = self.sink
        if not old or old == where or not self.ids:
            self.sink = where
            return 0, 0, old
        asked = [(key, entry_id) for key, tail in self.ids.items() for entry_id in tail]
        # A lost connection here leaves the tail as it was: the next attempt looks again.
        found = await sink.write([(k, encode(b"XRANGE", k, i, i)) for k, i in asked])
        self.sink, self.ids = where, {}
        missing = sum(1 for hit in found if not hit or isinstance(hit, ReplyError))
        return missing, len(asked), old
