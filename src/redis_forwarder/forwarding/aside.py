"""What leaves a batch before the sink: messages over the route's size limit, stream
entries the sink refused for good, and stream entries a list or channel sink cannot
carry as the route asks. They go to the route's dead-letter stream
(written through the task's own sink connections) or are dropped; every one counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.resp import RawMessage, ReplyError
from redis_forwarder.sink.commands import EntryCommand
from redis_forwarder.sink.pubsub import PubSubSink
from redis_forwarder.sink.streams import StreamSink
from redis_forwarder.source.streams import Entry


@dataclass
class Oversize:
    """A route's size limit for pub/sub payloads: larger messages leave the batch and
    go to the dead-letter sink (when there is one) or are dropped."""

    limit: int
    metrics: TaskMetrics
    dead_letter: PubSubSink | None = None

    def fits(self, batch: list[RawMessage]) -> bool:
        """No message of ``batch`` is over the limit (nothing to set aside)."""
        limit = self.limit
        return all(len(message[1]) <= limit for message in batch)

    async def set_aside(self, batch: list[RawMessage]) -> list[RawMessage]:
        limit = self.limit
        if all(len(message[1]) <= limit for message in batch):
            return batch  # the common case: one pass, no copy
        large = [m for m in batch if len(m[1]) > limit]
        if self.dead_letter is not None:
            await self.dead_letter.write(large)
        self.metrics.oversize(len(large), self.dead_letter is not None, limit)
        return [m for m in batch if len(m[1]) <= limit]


@dataclass
class StreamDeadLetter:
    """Where stream entries that cannot be forwarded go: the route's dead-letter stream,
    written through the task's sink (``sink`` shares its connections)."""

    sink: StreamSink
    command: EntryCommand
    key_of: Callable[[bytes], bytes]

    async def write(self, entries: list[Entry]) -> list[tuple[bytes, bytes]]:
        """(stream, id) of the entries the dead-letter stream took."""
        command, key_of = self.command, self.key_of
        replies = await self.sink.write([(key_of(e[0]), command(*e)) for e in entries])
        return [
            (e[0], e[1])
            for e, r in zip(entries, replies, strict=True)
            if not isinstance(r, ReplyError)
        ]


@dataclass
class StreamOversize:
    """A route's size limit for stream entries (all fields together): larger entries
    are written to the dead-letter stream and acknowledged once it answered (a refusal
    leaves them pending, retried like any refused entry), or acknowledged and dropped."""

    limit: int
    metrics: TaskMetrics
    dead_letter: StreamDeadLetter | None = None

    async def set_aside(
        self, entries: list[Entry]
    ) -> tuple[list[Entry], list[tuple[bytes, bytes]]]:
        """(entries to forward, (stream, id) of those dealt with here)."""
        limit = self.limit
        too_large = [sum(len(part) for part in entry[2]) > limit for entry in entries]
        if not any(too_large):
            return entries, []
        large = [e for e, over in zip(entries, too_large, strict=True) if over]
        kept = [e for e, over in zip(entries, too_large, strict=True) if not over]
        if self.dead_letter is None:
            self.metrics.oversize(len(large), False, limit)
            return kept, [(e[0], e[1]) for e in large]
        written = await self.dead_letter.write(large)
        self.metrics.oversize(len(written), True, limit)
        return kept, written


@dataclass
class StreamUnfit:
    """Stream entries the route's list or channel command cannot encode
    (``EntryUnfit``: no such field; for JSON, bytes that are not UTF-8): written to the
    dead-letter stream and acknowledged once it took them, or left pending (claimed
    again at each reclaim, counted each time); never sent as something else."""

    metrics: TaskMetrics
    dead_letter: StreamDeadLetter | None = None

    async def set_aside(self, unfit: list[tuple[Entry, str]]) -> list[tuple[bytes, bytes]]:
        """(stream, id) of the entries dealt with here (to acknowledge)."""
        entries, reason = [entry for entry, _why in unfit], unfit[-1][1]
        written = await self.dead_letter.write(entries) if self.dead_letter else []
        if written:
            self.metrics.unfit_entries(len(written), True, reason)
        if len(written) < len(entries):  # no dead-letter stream, or it refused them
            self.metrics.unfit_entries(len(entries) - len(written), False, reason)
        return written
