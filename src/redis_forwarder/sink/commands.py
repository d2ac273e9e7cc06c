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
        trim_args = 0 if shape.maxlen is None else 3
        tail = _bulk(b"shard") + _bulk(shard.encode())
        head = _bulk(b"XADD")
        star = _bulk(b"*") + _bulk(b"payload")
        channel_key = _bulk(b"channel")
        pattern_key = _bulk(b"pattern")
        base_args = 2 + trim_args + 1 + 2 + 2 + 2  # XADD key [trim] * payload p channel c shard s

        def stream(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
            args = base_args + (2 if pattern else 0)
            return b"".join(
                (
                    b"*%d\r\n" % args,
                    head,
                    _bulk(target(channel, pattern)),
                    trim,
                    star,
                    _bulk(payload),
                    channel_key,
                    _bulk(channel),
                    pattern_key + _bulk(pattern) if pattern else b"",
                    tail,
                )
            )

        return stream
    verb = _bulk(b"PUBLISH" if shape.kind is SinkKind.CHANNEL else b"RPUSH")

    def simple(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
        return b"*3\r\n" + verb + _bulk(target(channel, pattern)) + _bulk(payload)

    return simple
