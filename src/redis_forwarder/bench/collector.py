"""The bench's reader of what a forwarder wrote: takes each message's latency on receipt
(µs clock, against the publish time in the payload), for either sink kind.

- ``channel``: PSUBSCRIBE to PATTERN on HOST:PORT.
- ``stream``: a blocking ``XREAD COUNT 10000 BLOCK 0 STREAMS s1 s2 ... id1 id2 ...``
  for a group of output streams in one command, one connection per group: on one
  server, all of them; on a cluster, the streams of one slot on its master (a cluster
  refuses a command on keys of several slots; the caller groups them). The first ids
  are each stream's last entry when the collector starts (0-0 for none), then the
  last id read: explicit ids, so nothing written after "ready" is missed even before
  the server has the read blocked. An entry is timed when the reply that carries it
  arrives (a stream entry id has only ms resolution).

Prints "ready" once subscribed (or once the reads are sent); when EXPECTED distinct
messages came, or nothing came for SETTLE seconds after the first, or after TIMEOUT
seconds, prints one JSON line:
``{"count": n, "first_publish_us": t, "last_receive_us": t, "latencies_ms": [...]}``;
``count`` counts distinct sequence numbers (a duplicate is neither counted nor timed).

    python -m redis_forwarder.bench.collector channel HOST PORT PATTERN EXPECTED SETTLE TIMEOUT
    python -m redis_forwarder.bench.collector stream EXPECTED SETTLE TIMEOUT \\
        HOST:PORT=STREAM[,STREAM...] [HOST:PORT=STREAM[,STREAM...] ...]

(a connection, and a blocking XREAD, per ``HOST:PORT=...`` argument).
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from typing import Any

import hiredis

from redis_forwarder.resp import encode

XREAD_COUNT = 10_000


class Tally:
    """Distinct messages received, their latencies, the first publish and last receipt."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.latencies_ms: list[float] = []
        self.first_publish_us = 0
        self.last_receive_us = 0
        self.grew_at = 0.0  # when a receipt last added a message (monotonic)

    @property
    def count(self) -> int:
        return len(self.seen)

    def add(self, payload: bytes, received_us: int) -> None:
        seq, published, _ = payload.split(b" ", 2)
        if seq in self.seen:
            return
        self.seen.add(seq)
        published_us = int(published)
        self.latencies_ms.append((received_us - published_us) / 1000)
        if not self.first_publish_us or published_us < self.first_publish_us:
            self.first_publish_us = published_us
        self.last_receive_us = received_us

    def done(self, expected: int, settle: float, timeout: float, started: float) -> bool:
        """EXPECTED came, or TIMEOUT passed, or nothing for SETTLE after the first."""
        now = time.monotonic()
        if self.count >= expected or now - started >= timeout:
            return True
        return bool(self.count) and now - self.grew_at > settle

    def result(self) -> dict[str, object]:
        return {
            "count": self.count,
            "first_publish_us": self.first_publish_us,
            "last_receive_us": self.last_receive_us,
            "latencies_ms": self.latencies_ms,
        }


def _connect(host: str, port: int) -> socket.socket:
    connection = socket.create_connection((host, port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _call(connection: socket.socket, reader: hiredis.Reader, *args: bytes) -> Any:
    connection.sendall(encode(*args))
    while (reply := reader.gets()) is False:
        reader.feed(connection.recv(65536))
    return reply


def collect(
    host: str, port: int, pattern: str, expected: int, settle: float, timeout: float
) -> dict[str, object]:
    """A channel sink's messages, on a pattern subscription."""
    connection = _connect(host, port)
    reader = hiredis.Reader()
    _call(connection, reader, b"PSUBSCRIBE", pattern.encode())
    print("ready", flush=True)
    tally = Tally()
    started = time.monotonic()
    connection.settimeout(0.2)
    while not tally.done(expected, settle, timeout, started):
        try:
            data = connection.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        now_us = time.time_ns() // 1000
        reader.feed(data)
        while (message := reader.gets()) is not False:
            tally.add(message[3], now_us)
        tally.grew_at = time.monotonic()
    return tally.result()


class _StreamNode:
    """One node's connection, its streams and the last id read of each."""

    def __init__(self, host: str, port: int, streams: list[str]) -> None:
        self.connection = _connect(host, port)
        self.reader = hiredis.Reader()
        self.last_ids: dict[bytes, bytes] = {}
        conn, reader = self.connection, self.reader
        for stream in streams:
            name = stream.encode()
            last = _call(conn, reader, b"XREVRANGE", name, b"+", b"-", b"COUNT", b"1")
            if isinstance(last, hiredis.ReplyError):
                raise last
            self.last_ids[name] = last[0][0] if last else b"0-0"

    def read_next(self) -> None:
        names, ids = list(self.last_ids), list(self.last_ids.values())
        count = b"%d" % XREAD_COUNT
        read = encode(b"XREAD", b"COUNT", count, b"BLOCK", b"0", b"STREAMS", *names, *ids)
        self.connection.sendall(read)

    def receive(self, tally: Tally) -> bool:
        """What arrived: timed at once, and the next read sent. False once closed."""
        data = self.connection.recv(1 << 20)
        if not data:
            return False
        now_us = time.time_ns() // 1000
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            for stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_ids[stream] = entry_id
                    values = dict(zip(fields[::2], fields[1::2], strict=True))
                    tally.add(values[b"payload"], now_us)
            self.read_next()
        return True


def collect_streams(
    groups: list[tuple[str, int, list[str]]], expected: int, settle: float, timeout: float
) -> dict[str, object]:
    """A stream sink's entries, each group's streams read by one blocking XREAD."""
    selector = selectors.DefaultSelector()
    for host, port, streams in groups:
        node = _StreamNode(host, port, streams)
        node.read_next()
        selector.register(node.connection, selectors.EVENT_READ, node)
    print("ready", flush=True)
    tally = Tally()
    started = time.monotonic()
    while not tally.done(expected, settle, timeout, started):
        for key, _events in selector.select(0.2):
            node = key.data
            before = tally.count
            if not node.receive(tally):
                selector.unregister(key.fileobj)
            if tally.count != before:
                tally.grew_at = time.monotonic()
        if not selector.get_map():
            break
    return tally.result()


def parse_groups(arguments: list[str]) -> list[tuple[str, int, list[str]]]:
    """``HOST:PORT=STREAM,STREAM`` arguments -> [(host, port, [streams])]."""
    groups = []
    for argument in arguments:
        address, streams = argument.split("=", 1)
        host, port = address.rsplit(":", 1)
        groups.append((host, int(port), streams.split(",")))
    return groups


def main() -> None:
    kind, *arguments = sys.argv[1:]
    if kind == "channel":
        host, port, pattern, expected, settle, timeout = arguments[:6]
        result = collect(host, int(port), pattern, int(expected), float(settle), float(timeout))
    elif kind == "stream":
        expected, settle, timeout, *groups = arguments
        result = collect_streams(parse_groups(groups), int(expected), float(settle), float(timeout))
    else:
        raise SystemExit(f"unknown sink kind {kind!r}: channel or stream")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
