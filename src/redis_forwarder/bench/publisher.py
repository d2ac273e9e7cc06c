"""The bench's load: sequence-numbered, timestamped messages published over a raw socket.

Payload: ``b"<seq> <unix µs> "`` padded with ``x`` to SIZE bytes; the time is taken
just before the write that carries the message.

- RATE 0: as fast as possible, pipelined, ``FULL_SPEED_CHUNK`` commands per write.
- RATE > 0: paced as a real publisher sends. With CHUNK 1 (the default) every message
  is one PUBLISH in a write of its own, sent at its due time (start + seq / RATE):
  the publisher sleeps only when ahead of schedule, by the amount ahead, and when
  behind (``time.sleep`` overshoots by tens of µs) sends the overdue messages at once,
  still one write each. CHUNK N > 1 keeps the old bursts for comparison: N commands
  in one write every N / RATE seconds.

Replies are drained without blocking the pacing (a non-blocking read once
``DRAIN_AT`` are outstanding); only past ``MAX_OUTSTANDING`` does the publisher wait.

    python -m redis_forwarder.bench.publisher HOST PORT COUNT SIZE RATE CHANNELS PREFIX [CHUNK]

Prints one JSON line when done: ``{"published": n, "seconds": s, "writes": w,
"achieved_rate": r}``, seconds from the first write to the last reply, achieved_rate
the messages/s actually sent (0 at full speed), so a rate the publisher could not keep
shows as such.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import hiredis

from redis_forwarder.resp import encode

FULL_SPEED_CHUNK = 200
DRAIN_AT = 32  # outstanding replies that make the publisher read what is there
MAX_OUTSTANDING = 800  # outstanding replies past which it waits for them


def payload(seq: int, size: int) -> bytes:
    head = b"%d %d " % (seq, time.time_ns() // 1000)
    return head + b"x" * max(0, size - len(head))


def paced_writes(
    count: int,
    rate: float,
    chunk: int,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[range]:
    """The sequence numbers of each write, in order, each yielded at its due time.

    At RATE 0, ``chunk`` at a time with no waiting. Otherwise write ``k`` carries
    ``chunk`` messages from ``k * chunk`` and is due at start + k * chunk / rate:
    sleep only when ahead of that (by the amount ahead); when behind, yield at once.
    """
    started = clock()
    for seq in range(0, count, chunk):
        if rate:
            ahead = started + seq / rate - clock()
            if ahead > 0:
                sleep(ahead)
        yield range(seq, min(seq + chunk, count))


@dataclass(frozen=True)
class Published:
    published: int
    seconds: float  # first write to last reply
    writes: int  # socket writes (sendall calls): one per message when paced, chunk 1
    achieved_rate: float  # messages/s actually sent; 0 at full speed (not paced)


def publish(
    host: str,
    port: int,
    count: int,
    size: int,
    rate: float,
    channels: int,
    prefix: str,
    chunk: int = 1,
) -> Published:
    conn = socket.create_connection((host, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies = hiredis.Reader()
    names = [f"{prefix}{i}".encode() for i in range(channels)]
    outstanding = writes = 0
    per_write = chunk if rate else FULL_SPEED_CHUNK

    def read(flags: int) -> None:
        nonlocal outstanding
        data = conn.recv(1 << 16, flags)
        if not data:
            raise ConnectionError("the server closed the publisher's connection")
        replies.feed(data)
        while replies.gets() is not False:
            outstanding -= 1

    started = time.monotonic()
    last_write = started
    for seqs in paced_writes(count, rate, per_write):
        conn.sendall(
            b"".join(encode(b"PUBLISH", names[seq % channels], payload(seq, size)) for seq in seqs)
        )
        last_write = time.monotonic()
        writes += 1
        outstanding += len(seqs)
        if outstanding >= DRAIN_AT:
            with contextlib.suppress(BlockingIOError):  # nothing there yet: go on
                read(socket.MSG_DONTWAIT)
        while outstanding > MAX_OUTSTANDING:
            read(0)
    while outstanding > 0:
        read(0)
    return Published(
        published=count,
        seconds=time.monotonic() - started,
        writes=writes,
        achieved_rate=achieved_rate(count, per_write, last_write - started) if rate else 0.0,
    )


def achieved_rate(count: int, chunk: int, span: float) -> float:
    """Messages/s sent: the last write (from message ``last``) went out ``span``
    seconds after the first; on schedule that is last / rate, so this gives the asked
    rate back, and less when the publisher fell behind. 0 for a single write."""
    last = (count - 1) // chunk * chunk
    return last / span if last and span > 0 else 0.0


def main() -> None:
    host, port, count, size, rate, channels, prefix = sys.argv[1:8]
    chunk = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    result = publish(
        host, int(port), int(count), int(size), float(rate), int(channels), prefix, chunk
    )
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
