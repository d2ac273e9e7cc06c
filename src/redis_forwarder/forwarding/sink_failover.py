"""What a task's sink lost in a failover: the last ids a stream sink returned on one
master, looked for on the next one.

A Sentinel failover promotes a replica without waiting for it; what the demoted master
took past that point is erased when it resyncs (issue 14: 12,000 messages of a pub/sub
route into a stream, 1.15 s at 10k msg/s, with a 0.038 s gap reported). Stream entries
were acknowledged at the source too and pub/sub keeps nothing: nothing retries them.
Without ``to.wait`` they cannot be saved, but they can be counted: the ids XADD returned
(the copied id, or the one the sink chose) are remembered, the last :data:`REMEMBERED`
per sink key, and XRANGEd on the new master when the sink's address changes; those it
lacks are counted (a lower bound: only the remembered tail is looked for) and logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis_forwarder.resp import ReplyError, encode
from redis_forwarder.source.streams import Entry

REMEMBERED = 1000  # ids per sink key looked for after a failover
Keyed = tuple[bytes, bytes]  # (sink key, an encoded command)
Lookup = Callable[[list[Keyed]], Awaitable[list[Any]]]  # pipelined, one reply each


class AckedTail:
    """The newest ids a stream sink returned per sink key, and the sink that did."""

    def __init__(self, key_of: Callable[[bytes], bytes]) -> None:
        """``key_of``: source stream -> sink key (stream routes; pub/sub: unused)."""
        self.key_of = key_of
        self.sink = ""
        self.ids: dict[bytes, deque[object]] = {}

    def _of(self, key: bytes) -> deque[object]:
        tail = self.ids.get(key)
        if tail is None:
            tail = self.ids[key] = deque(maxlen=REMEMBERED)
        return tail

    def note(self, entries: Sequence[Entry], replies: Sequence[object]) -> None:
        """A stream batch's answers: the ids the sink took (an UNREPLICATED answer or a
        refusal is no id: those entries stay pending). Bounded per batch."""
        key_of = self.key_of
        for entry, reply in zip(entries[-REMEMBERED:], replies[-REMEMBERED:], strict=True):
            if isinstance(reply, bytes):
                self._of(key_of(entry[0])).append(reply)

    def add(self, key: bytes, replies: Sequence[object]) -> None:
        """A pub/sub batch's replies, all for ``key``: kept as they are (one C-level
        extend per batch); refusals among them are skipped when looked for."""
        self._of(key).extend(replies[-REMEMBERED:])

    def add_each(self, keys: Sequence[bytes], replies: Sequence[object]) -> None:
        """A pub/sub batch's last replies, with the sink key of each (``keys`` are as
        many as the replies, or fewer: the last ones)."""
        last_key, tail = b"", None
        for key, reply in zip(keys, replies[len(replies) - len(keys) :], strict=True):
            if key != last_key or tail is None:  # most batches are runs of one channel
                last_key, tail = key, self._of(key)
            tail.append(reply)

    async def missing_on(self, lookup: Lookup, where: str) -> tuple[int, int, str]:
        """Connected to the sink at ``where``: if it is another server than the one the
        remembered ids were returned by, how many of them it lacks, of how many, and
        the old server (then forget them: they belong to the old master). ``lookup``
        sends the XRANGEs on the new sink (before anything else is written there)."""
        old = self.sink
        if not old or old == where or not self.ids:
            self.sink = where
            return 0, 0, old
        asked = [
            (key, entry_id)
            for key, tail in self.ids.items()
            for entry_id in tail
            if isinstance(entry_id, bytes)
        ]
        if not asked:
            self.sink, self.ids = where, {}
            return 0, 0, old
        # A lost connection here leaves the tail as it was: the next attempt looks again.
        found = await lookup([(k, encode(b"XRANGE", k, i, i)) for k, i in asked])
        self.sink, self.ids = where, {}
        missing = sum(1 for hit in found if not hit or isinstance(hit, ReplyError))
        return missing, len(asked), old
