"""Pub/sub on the raw wire: SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE on one connection, and every message
of each read handed over at once as ``(channel, payload, pattern)`` tuples.

Tuples, not objects: at a few hundred thousand messages a second, one allocation per
message is most of the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis_forwarder.resp import ConnectionLost, RawMessage, ReplyError, RespConnection, encode
from redis_forwarder.topology.slots import key_slot

NO_PATTERN = b""
# Messages per batch at most: a socket read brings up to 256 KiB, and a batch is what
# drop-oldest drops whole (a 64 KiB read was the batch before issue 16: about 400
# messages of 100 bytes).
BATCH = 1000
_CONFIRMATIONS = (b"subscribe", b"psubscribe", b"ssubscribe")


class PubSubReader:
    """One subscriber connection. ``subscribe`` waits for every confirmation."""

    def __init__(self, connection: RespConnection) -> None:
        self.connection = connection
        self.subscribed = 0
        self.pongs = 0
        self.unsubscribed = 0  # sharded channels Redis dropped (their slot moved)
        self._early: list[RawMessage] = []  # messages that came with the confirmations

    async def subscribe(
        self,
        channels: Sequence[bytes],
        patterns: Sequence[bytes],
        sharded: Sequence[bytes] = (),
    ) -> None:
        """Subscribe and wait for every confirmation. Sharded channels go in one
        SSUBSCRIBE per slot (Redis refuses a command across slots)."""
        expected = len(channels) + len(patterns) + len(sharded)
        if channels:
            self.connection.write(encode(b"SUBSCRIBE", *channels))
        if patterns:
            self.connection.write(encode(b"PSUBSCRIBE", *patterns))
        by_slot: dict[int, list[bytes]] = {}
        for channel in sharded:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        for group in by_slot.values():
            self.connection.write(encode(b"SSUBSCRIBE", *group))
        await self.connection.drain()
        confirmed = 0
        while confirmed < expected:
            replies = await self.connection.read()
            for reply in replies:
                if isinstance(reply, list) and reply[0] in _CONFIRMATIONS:
                    confirmed += 1
                elif isinstance(reply, ReplyError) or not isinstance(reply, list):
                    raise ConnectionLost(self.connection.name, f"subscribe refused: {reply!s:.200}")
            # Messages flow as soon as the first subscription is confirmed, often in the
            # same read: keep them for the first ``messages`` call.
            self._early.extend(self._messages(replies))
        self.subscribed = expected

    @property
    def early(self) -> bool:
        """Messages that came with the confirmations wait for ``messages``."""
        return bool(self._early)

    async def messages(self, timeout: float) -> list[RawMessage]:
        """Every message that arrived in the next read; ``[]`` after ``timeout`` idle.

        Other pushes (PONG of the heartbeat, unsubscribe confirmations) are skipped.
        """
        if self._early:
            early, self._early = self._early, []
            return early
        return self._messages(await self.connection.read(timeout, idle_ok=True, most=BATCH))

    @staticmethod
    def only_messages(replies: list[Any]) -> list[RawMessage] | None:
        """The replies as messages when every one is a message (the fast lane's case);
        ``None`` when any is something else (a PONG, an unsubscribe): then they go the
        ordinary way, through ``messages``, which counts those."""
        batch: list[RawMessage] = []
        append = batch.append
        for reply in replies:
            kind = reply[0] if isinstance(reply, list) else None
            if kind == b"message" or kind == b"smessage":
                append((reply[1], reply[2], NO_PATTERN))
            elif kind == b"pmessage":
                append((reply[2], reply[3], reply[1]))
            else:
                return None
        return batch

    def _messages(self, replies: list[Any]) -> list[RawMessage]:
        batch: list[RawMessage] = []
        for reply in replies:
            if not isinstance(reply, list):
                continue
            kind = reply[0]
            if kind == b"message":
                batch.append((reply[1], reply[2], NO_PATTERN))
            elif kind == b"pmessage":
                batch.append((reply[2], reply[3], reply[1]))
            elif kind == b"smessage":
                batch.append((reply[1], reply[2], NO_PATTERN))
            elif kind == b"sunsubscribe":
                self.unsubscribed += 1
            elif kind == b"pong":
                self.pongs += 1
        return batch

    async def ping(self) -> None:
        """The heartbeat: a PING answered on the subscription (counted in ``pongs``)."""
        self.connection.write(encode(b"PING"))
        await self.connection.drain()
