"""Streams through a consumer group: entries are read with XREADGROUP, acknowledged
(XACK) only after the sink confirmed them, and pending entries (a crashed or replaced
consumer's) are claimed with XAUTOCLAIM before new ones are read.

Entries are ``(stream, id, fields)`` with ``fields`` the flat [field, value, ...] list
Redis returns: nothing is decoded, binary passes through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis_forwarder.resp import ConnectionLost, ReplyError, RespConnection, encode

Entry = tuple[bytes, bytes, list[bytes]]  # stream, id, [field, value, ...]
END_OF_CLAIMS = b"0-0"


class StreamReader:
    def __init__(
        self, connection: RespConnection, streams: Sequence[bytes], group: bytes, consumer: bytes
    ) -> None:
        self.connection = connection
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        # Per stream, where XAUTOCLAIM goes on; a stream leaves once it has no more.
        self._claim_cursors = {stream: b"0-0" for stream in self.streams}

    async def ensure_groups(self) -> None:
        """Create the group on each stream (and the stream) if missing, reading from
        the entries added after creation ($)."""
        for stream in self.streams:
            reply = await self.connection.call(
                b"XGROUP", b"CREATE", stream, self.group, b"$", b"MKSTREAM"
            )
            if isinstance(reply, ReplyError) and not str(reply).startswith("BUSYGROUP"):
                raise ConnectionLost(self.connection.name, f"XGROUP CREATE {stream!r}: {reply}")

    async def others_pending(self) -> bool:
        """Whether a consumer other than us holds pending entries: a previous owner's
        (crashed, replaced, or frozen while its blocking read was still served by Redis).
        Ownership fences that owner off, so its entries are ours to claim now."""
        for stream in self.streams:
            reply = await self._call(b"XPENDING", stream, self.group)
            consumers = reply[3] if isinstance(reply, list) and len(reply) > 3 else None
            if any(name != self.consumer for name, _count in consumers or ()):
                return True
        return False

    async def backlog(self) -> tuple[int | None, int] | ReplyError:
        """The group's entries not read yet and read but not acknowledged, summed over
        the streams (XINFO GROUPS; Redis 7's lag is nil when it cannot tell: then None).
        Redis' refusal is returned, not raised: an ACL user without XINFO (docs before
        this measure) must still forward."""
        lag: int | None = 0
        pending = 0
        for stream in self.streams:
            reply = await self.connection.call(b"XINFO", b"GROUPS", stream)
            if isinstance(reply, ReplyError):
                return reply
            for group in reply or ():
                fields = dict(zip(group[::2], group[1::2], strict=True))
                if fields.get(b"name") != self.group:
                    continue
                pending += int(fields.get(b"pending") or 0)
                stream_lag = fields.get(b"lag")
                lag = None if lag is None or stream_lag is None else lag + int(stream_lag)
        return lag, pending

    def reclaim(self) -> None:
        """Go through every stream's pending entries again (those the sink refused)."""
        self._claim_cursors = {stream: b"0-0" for stream in self.streams}

    @property
    def claiming(self) -> bool:
        return bool(self._claim_cursors)

    async def claim(self, count: int) -> list[Entry]:
        """The next pending entries of any consumer of the group, now ours."""
        stream, cursor = next(iter(self._claim_cursors.items()))
        reply = await self._call(
            b"XAUTOCLAIM",
            stream,
            self.group,
            self.consumer,
            b"0",
            cursor,
            b"COUNT",
            b"%d" % count,
        )
        next_cursor, claimed = reply[0], reply[1]
        if next_cursor == END_OF_CLAIMS:
            del self._claim_cursors[stream]
        else:
            self._claim_cursors[stream] = next_cursor
        return [(stream, entry[0], entry[1]) for entry in claimed if entry is not None]

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """New entries, waiting up to ``block_ms`` (the heartbeat: a silent connection
        past that is lost)."""
        reply = await self._call(
            b"XREADGROUP",
            b"GROUP",
            self.group,
            self.consumer,
            b"COUNT",
            b"%d" % count,
            b"BLOCK",
            b"%d" % block_ms,
            b"STREAMS",
            *self.streams,
            *([b">"] * len(self.streams)),
        )
        entries: list[Entry] = []
        for stream, items in reply or ():
            entries.extend((stream, entry_id, fields) for entry_id, fields in items)
        return entries

    async def ack(self, done: dict[bytes, list[bytes]]) -> None:
        """XACK what the sink confirmed, one pipelined buffer for every stream."""
        commands = [
            encode(b"XACK", stream, self.group, *ids) for stream, ids in done.items() if ids
        ]
        if not commands:
            return
        self.connection.write(b"".join(commands))
        await self.connection.drain()
        replies: list[Any] = []
        while len(replies) < len(commands):
            replies.extend(await self.connection.read())
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise ConnectionLost(self.connection.name, f"XACK refused: {reply}")

    async def _call(self, *args: bytes) -> Any:
        reply = await self.connection.call(*args)
        if isinstance(reply, ReplyError):
            raise ConnectionLost(self.connection.name, f"{args[0].decode()}: {reply}")
        return reply
