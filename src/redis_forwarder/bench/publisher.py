"""The bench's load: sequence-numbered, timestamped messages published over a raw socket.

Payload: ``b"<seq> <unix µs> "`` padded with ``x`` to SIZE bytes. At full speed the
commands go out pipelined, CHUNK at a time; at a fixed RATE, a chunk per tick.

    python -m redis_forwarder.bench.publisher HOST PORT COUNT SIZE RATE CHANNELS PREFIX

RATE 0 means as fast as possible. Prints "<published> <seconds>" when done.
"""

from __future__ import annotations

import socket
import sys
import time

import hiredis

from redis_forwarder.resp import encode

CHUNK = 200


def payload(seq: int, size: int) -> bytes:
    head = b"%d %d " % (seq, time.time_ns() // 1000)
    return head + b"x" * max(0, size - len(head))


def publish(
    host: str, port: int, count: int, size: int, rate: float, channels: int, prefix: str
) -> tuple[int, float]:
    conn = socket.create_connection((host, port))
    replies = hiredis.Reader()
    names = [f"{prefix}{i}".encode() for i in range(channels)]
    outstanding = 0
    started = time.monotonic()
    seq = 0
    while seq < count:
        chunk = min(CHUNK, count - seq)
        if rate:
            due = started + seq / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        conn.sendall(
            b"".join(
                encode(b"PUBLISH", names[(seq + i) % channels], payload(seq + i, size))
                for i in range(chunk)
            )
        )
        seq += chunk
        outstanding += chunk
        # Keep at most a few chunks unanswered: a publisher, not a flood of the socket.
        while outstanding > CHUNK * 4:
            replies.feed(conn.recv(1 << 16))
            while replies.gets() is not False:
                outstanding -= 1
    while outstanding:
        replies.feed(conn.recv(1 << 16))
        while replies.gets() is not False:
            outstanding -= 1
    return count, time.monotonic() - started


def main() -> None:
    host, port, count, size, rate, channels, prefix = sys.argv[1:8]
    published, seconds = publish(
        host, int(port), int(count), int(size), float(rate), int(channels), prefix
    )
    print(published, f"{seconds:.6f}")


if __name__ == "__main__":
    main()
