"""The lean wire path: RESP commands encoded once into bytes, replies parsed by hiredis.

Shared by sources and sinks (they never import each other). redis-py is right for
control work and wrong for the data path: a whole batch is encoded into one buffer and
written with one syscall, and every complete reply in a read is parsed in one go.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import hiredis

ReplyError = hiredis.ReplyError


def encode(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


def encode_many(commands: Iterable[tuple[bytes, ...]]) -> bytes:
    """Several commands in one buffer, for one write (a pipeline, not a transaction)."""
    return b"".join(encode(*command) for command in commands)


class ReplyParser:
    """Incremental RESP parser: feed what the socket gave, take every complete reply.

    Error replies come back as :class:`ReplyError` values, not raised, so that one
    refused command in a pipelined batch is seen in its place.
    """

    def __init__(self) -> None:
        self._reader = hiredis.Reader()

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def replies(self) -> Iterator[Any]:
        while (reply := self._reader.gets()) is not False:
            yield reply
