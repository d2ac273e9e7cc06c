"""Running the bench: each forwarder variant in its own process against the same
standalone Redis, the same load, in the same run; results read back from the sinks.

Throughput is messages forwarded per second from the first publish to the last
forwarded entry; latency is the stream entry's id (the server's clock, in ms) minus the
publish time carried in the payload (µs), so it has millisecond resolution. Published
minus forwarded is reported as lost: Redis pub/sub keeps nothing for a subscriber
that falls too far behind (client-output-buffer-limit pubsub).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from redis_forwarder.errors import ForwarderError
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline

VARIANTS = ("naive", "raw", "ours")
SETTLE = 1.0  # seconds without growth that mean the forwarder is done


@dataclass(frozen=True)
class Scenario:
    name: str
    messages: int
    size: int = 100
    rate: float = 0.0  # 0: as fast as possible
    channels: int = 16


@dataclass(frozen=True)
class Result:
    variant: str
    scenario: str
    published: int
    forwarded: int
    lost: int
    seconds: float
    msgs_per_second: float
    latency_ms: dict[str, float]
    cpu_seconds: float
    rss_mb: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _cpu_and_rss(pid: int) -> tuple[float, float]:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0.0, 0.0
    return cpu, rss_kb / 1024


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def run_variant(
    variant: str, server: Address, scenario: Scenario, progress: Callable[[str], None]
) -> Result:
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"bench:{tag}:{variant}", f"bench.{tag}.{variant}."
    client = redis.Redis(host=server.host, port=server.port, socket_timeout=30)
    forwarder = subprocess.Popen(
        _python(
            "redis_forwarder.bench.forwarders",
            variant,
            server.host,
            str(server.port),
            prefix + "*",
            stream,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forwarder.stdout is not None
        if forwarder.stdout.readline().strip() != "ready":
            raise ForwarderError(
                f"the {variant} forwarder did not start: "
                f"{forwarder.stderr.read() if forwarder.stderr else ''}"
            )
        cpu_before, _ = _cpu_and_rss(forwarder.pid)
        progress(f"{scenario.name}: {variant}: publishing {scenario.messages} messages")
        published = subprocess.run(
            _python(
                "redis_forwarder.bench.publisher",
                server.host,
                str(server.port),
                str(scenario.messages),
                str(scenario.size),
                str(scenario.rate),
                str(scenario.channels),
                prefix,
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        count = int(published.stdout.split()[0])
        forwarded = _wait_settled(client, stream, count, progress, f"{scenario.name}: {variant}")
        cpu_after, rss = _cpu_and_rss(forwarder.pid)
    finally:
        forwarder.send_signal(signal.SIGKILL)
        forwarder.wait(10)
    latencies, first_publish_us, last_entry_ms = _latencies(client, stream)
    client.delete(stream)
    seconds = max(1e-6, last_entry_ms / 1000 - first_publish_us / 1e6) if latencies else 0.0
    ordered = sorted(latencies)
    return Result(
        variant=variant,
        scenario=scenario.name,
        published=count,
        forwarded=forwarded,
        lost=count - forwarded,
        seconds=round(seconds, 3),
        msgs_per_second=round(forwarded / seconds) if seconds else 0.0,
        latency_ms={
            "p50": percentile(ordered, 0.5),
            "p99": percentile(ordered, 0.99),
            "p99.9": percentile(ordered, 0.999),
            "max": ordered[-1] if ordered else float("nan"),
        },
        cpu_seconds=round(cpu_after - cpu_before, 2),
        rss_mb=round(rss, 1),
    )


def _wait_settled(
    client: redis.Redis, stream: str, expected: int, progress: Callable[[str], None], what: str
) -> int:
    deadline = Deadline(300)
    length, still_since = -1, time.monotonic()
    while not deadline.expired:
        current = int(client.xlen(stream))
        if current != length:
            length, still_since = current, time.monotonic()
            progress(f"{what}: {current}/{expected} forwarded")
        if length >= expected or time.monotonic() - still_since > SETTLE:
            return length
        time.sleep(0.1)
    return length


def _latencies(client: redis.Redis, stream: str) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    first_publish_us, last_entry_ms = 0, 0
    start = "-"
    while True:
        entries: Any = client.xrange(stream, min=start, max="+", count=10_000)
        if not entries:
            break
        for entry_id, fields in entries:
            entry_ms = int(entry_id.split(b"-")[0])
            published_us = int(fields[b"payload"].split(b" ", 2)[1])
            latencies.append(entry_ms - published_us / 1000)
            if not first_publish_us or published_us < first_publish_us:
                first_publish_us = published_us
            last_entry_ms = max(last_entry_ms, entry_ms)
        last_id = entries[-1][0].decode()
        ms, seq = last_id.split("-")
        start = f"{ms}-{int(seq) + 1}"
    return latencies, first_publish_us, last_entry_ms
