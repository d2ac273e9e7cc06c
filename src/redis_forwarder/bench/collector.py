"""The bench's reader for channel sinks: subscribes to what a forwarder publishes and
measures each message's latency on receipt (µs clock, against the publish time in the
payload). Prints "ready" once subscribed; when EXPECTED messages came, or nothing came
for SETTLE seconds after the first, or after TIMEOUT seconds, prints one JSON line:
``{"count": n, "first_publish_us": t, "last_receive_us": t, "latencies_ms": [...]}``.

    python -m redis_forwarder.bench.collector HOST PORT PATTERN EXPECTED SETTLE TIMEOUT
"""

from __future__ import annotations

import json
import socket
import sys
import time

import hiredis

from redis_forwarder.resp import encode


def collect(
    host: str, port: int, pattern: str, expected: int, settle: float, timeout: float
) -> dict[str, object]:
    connection = socket.create_connection((host, port))
    connection.sendall(encode(b"PSUBSCRIBE", pattern.encode()))
    reader = hiredis.Reader()
    while reader.gets() is False:
        reader.feed(connection.recv(65536))
    print("ready", flush=True)
    latencies: list[float] = []
    first_publish_us, last_receive_us = 0, 0
    started = time.monotonic()
    connection.settimeout(0.2)
    last_growth = time.monotonic()
    while len(latencies) < expected and time.monotonic() - started < timeout:
        if latencies and time.monotonic() - last_growth > settle:
            break
        try:
            data = connection.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        now_us = time.time_ns() // 1000
        reader.feed(data)
        while (message := reader.gets()) is not False:
            published_us = int(message[3].split(b" ", 2)[1])
            latencies.append((now_us - published_us) / 1000)
            if not first_publish_us or published_us < first_publish_us:
                first_publish_us = published_us
        last_receive_us, last_growth = now_us, time.monotonic()
    return {
        "count": len(latencies),
        "first_publish_us": first_publish_us,
        "last_receive_us": last_receive_us,
        "latencies_ms": latencies,
    }


def main() -> None:
    host, port, pattern, expected, settle, timeout = sys.argv[1:7]
    result = collect(host, int(port), pattern, int(expected), float(settle), float(timeout))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
