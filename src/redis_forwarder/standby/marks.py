"""The owner's watermark: how far it got, written in the sink's deployment with the
batches it describes, so that a standby can find that point in its own ring (issue 15).

A pub/sub message has no id. What the owner and a standby share is the order in which
one Redis node delivers messages (a master and its replica deliver PUBLISH in the same
order: the replica receives it through the replication stream; not in a cluster, where
the bus carries PUBLISH to every node, so there the standby listens on the owner's
node, ``placements.py``). So the watermark names
the last messages written by their digests, in order (:data:`DIGESTS` of them), and
the standby looks for that sequence in its ring. A count would not do: the standby
started listening at another moment than the owner.

Written with a batch only every :data:`MARK_EVERY` seconds at most, in the same
pipeline after the batch's commands: a watermark is exactly as durable as the writes
before it (one connection, in order), and a route that receives one message at a time
does not pay a second command per message. A watermark that lags only costs
duplicates at a takeover, never loss (the standby replays from an earlier point). A
hand-off (``final``) always writes one, so that a planned move duplicates nothing.

Pure apart from the clock: encoding, decoding, and which messages to digest.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from redis_forwarder.resp import RawMessage, encode

DIGESTS = 8  # the last messages a watermark names: enough to be unambiguous in practice
MARK_EVERY = 0.02  # seconds: at most one watermark per this span (duplicates at most this)
MARK_TTL = 86_400  # seconds: a route removed leaves no watermark behind for long
VERSION = b"1"


def digest(message: RawMessage) -> int:
    """A stable digest of one message (channel and payload; not the pattern: the owner
    and the standby may match it by different patterns of the same route). crc32, not
    ``hash``: Python salts ``hash`` per process, and the digest crosses nodes."""
    channel, payload, _pattern = message
    return zlib.crc32(payload, zlib.crc32(channel))


def mark_key(route: str, shard: str) -> bytes:
    """Where a task's watermark lives in its sink's deployment."""
    return f"redis-forwarder:mark:{route}:{shard}".encode()


@dataclass(frozen=True)
class Watermark:
    """``digests``: of the last messages written, oldest first; ``written``: messages
    the writer had written in all (its own count, for the logs); ``at``: when, on the
    writer's clock (seconds since the epoch), to bound an unaccounted span."""

    digests: tuple[int, ...]
    written: int
    at: float

    def encode(self) -> bytes:
        digests = b",".join(b"%x" % d for d in self.digests)
        return b"|".join((VERSION, b"%d" % self.written, b"%.3f" % self.at, digests))

    @classmethod
    def decode(cls, data: bytes) -> Watermark:
        """Raise ValueError on anything but a watermark this version wrote."""
        version, written, at, digests = data.split(b"|")
        if version != VERSION:
            raise ValueError(f"watermark version {version!r}, expected {VERSION!r}")
        found = tuple(int(d, 16) for d in digests.split(b",") if d)
        return cls(found, int(written), float(at))


class Marks:
    """The owner's side: after each batch, the SET command that records it, or nothing
    when the last watermark is younger than ``every`` seconds."""

    def __init__(self, key: bytes, every: float = MARK_EVERY) -> None:
        self.key = key
        self.every = every
        self.written = 0  # messages written under these marks
        self.marks = 0  # watermarks sent
        self._tail: list[RawMessage] = []  # the last DIGESTS messages written
        self._last = float("-inf")  # monotonic time of the last watermark

    def after(self, batch: Sequence[RawMessage], final: bool = False) -> bytes | None:
        """``batch`` is being written: the command to send after it, if one is due."""
        self.written += len(batch)
        tail = self._tail
        if len(batch) >= DIGESTS:
            tail = list(batch[-DIGESTS:])
        elif batch:
            tail = (tail + list(batch))[-DIGESTS:]
        self._tail = tail
        now = time.monotonic()
        if not tail or (not final and now - self._last < self.every):
            return None
        self._last = now
        self.marks += 1
        mark = Watermark(tuple(digest(m) for m in tail), self.written, time.time())
        return encode(b"SET", self.key, mark.encode(), b"EX", b"%d" % MARK_TTL)

    def final(self) -> bytes | None:
        """A hand-off: the watermark of everything written, due or not."""
        return self.after((), final=True)
