"""What a route writes for each message, encoded straight into RESP. Pure.

stream: ``XADD target [MAXLEN ~ n] * payload P channel C [pattern X] shard S``
channel: ``PUBLISH target P``
list: ``RPUSH target P``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

SinkCommand = Callable[[bytes, bytes, bytes], bytes]  # (channel, payload, pattern) -> RESP


class SinkKind(StrEnum):
    STREAM = "stream"
    CHANNEL = "channel"
    LIST = "list"


@dataclass(frozen=True)
class SinkShape:
    kind: SinkKind
    maxlen: int | None = None


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def sink_command(
    shape: SinkShape, target: Callable[[bytes, bytes], bytes], shard: str
) -> SinkCommand:
    """A function that encodes one message's command; the constant parts are encoded once."""
    if shape.kind is SinkKind.STREAM:
        trim = (
            b""
            if shape.maxlen is None
            else (_bulk(b"MAXLEN") + _bulk(b"~") + _bulk(str(shape.maxlen).encode()))
        )
        # XADD key [MAXLEN ~ n] * payload P channel C [pattern X] shard S
        args = 2 + (3 if shape.maxlen is not None else 0) + 1 + 6
        head = b"*%d\r\n" % args + _bulk(b"XADD")
        head_with_pattern = b"*%d\r\n" % (args + 2) + _bulk(b"XADD")
        middle = trim + _bulk(b"*") + _bulk(b"payload")
        channel_key = _bulk(b"channel")
        tail = _bulk(b"shard") + _bulk(shard.encode())
        pattern_key = _bulk(b"pattern")

        def stream(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
            key = target(channel, pattern)
            if pattern:
                return b"%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s" % (
                    head_with_pattern,
                    len(key),
                    key,
                    middle,
                    len(payload),
                    payload,
                    channel_key,
                    len(channel),
                    channel,
                    pattern_key,
                    len(pattern),
                    pattern,
                    tail,
                )
            # One formatting operation per message: this runs for every message.
            return b"%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s" % (
                head,
                len(key),
                key,
                middle,
                len(payload),
                payload,
                channel_key,
                len(channel),
                channel,
                tail,
            )

        return stream
    verb = _bulk(b"PUBLISH" if shape.kind is SinkKind.CHANNEL else b"RPUSH")

    head = b"*3\r\n" + verb

    def simple(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
        key = target(channel, pattern)
        return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n" % (head, len(key), key, len(payload), payload)

    return simple
