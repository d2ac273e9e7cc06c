"""Pub/sub on the raw wire: SUBSCRIBE / PSUBSCRIBE on one connection, and every message
of each read handed over at once as ``(channel, payload, pattern)`` tuples.

Tuples, not objects: at a few hundred thousand messages a second, one allocation per
message is most of the budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis_forwarder.resp import ConnectionLost, RespConnection, encode

RawMessage = tuple[bytes, bytes, bytes]  # channel, payload, pattern (b"" if none)
NO_PATTERN = b""


class PubSubReader:
    """One subscriber connection. ``subscribe`` waits for every confirmation."""

    def __init__(self, connection: RespConnection) -> None:
        self.connection = connection
        self.subscribed = 0
        self.pongs = 0

    async def subscribe(self, channels: Sequence[bytes], patterns: Sequence[bytes]) -> None:
        expected = len(channels) + len(patterns)
        if channels:
            self.connection.write(encode(b"SUBSCRIBE", *channels))
        if patterns:
            self.connection.write(encode(b"PSUBSCRIBE", *patterns))
        await self.connection.drain()
        confirmed = 0
        while confirmed < expected:
            for reply in await self.connection.read():
                if isinstance(reply, list) and reply[0] in (b"subscribe", b"psubscribe"):
                    confirmed += 1
                else:
                    raise ConnectionLost(self.connection.name, f"unexpected reply {reply!r:.80}")
        self.subscribed = expected

    async def messages(self, timeout: float) -> list[RawMessage]:
        """Every message that arrived in the next read; ``[]`` after ``timeout`` idle.

        Other pushes (PONG of the heartbeat, unsubscribe confirmations) are skipped.
        """
        batch: list[RawMessage] = []
        for reply in await self.connection.read(timeout, idle_ok=True):
            kind = reply[0]
            if kind == b"message":
                batch.append((reply[1], reply[2], NO_PATTERN))
            elif kind == b"pmessage":
                batch.append((reply[2], reply[3], reply[1]))
            elif kind == b"pong":
                self.pongs += 1
        return batch

    async def ping(self) -> None:
        """The heartbeat: a PING answered on the subscription (counted in ``pongs``)."""
        self.connection.write(encode(b"PING"))
        await self.connection.drain()
