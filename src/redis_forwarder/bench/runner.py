"""Running the bench: each forwarder variant in its own process against the same
Redis (standalone, or a cluster), the same load, in the same run; results read back
from the sinks.

Throughput is messages forwarded per second from the first publish to the last
forwarded entry. Latency, for stream sinks, is the entry's id (the server's clock, in
ms) minus the publish time carried in the payload (µs), so it has millisecond
resolution; for channel sinks, a collector process takes it on receipt (µs). Published
minus forwarded is reported as lost: Redis pub/sub keeps nothing for a subscriber
that falls too far behind (client-output-buffer-limit pubsub).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from redis_forwarder.errors import ForwarderError
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline

# "marks": ours with the watermarks of a route with a standby (issue 15); not run
# unless asked for (--variants).
VARIANTS = ("naive", "raw", "ours", "marks")
DEFAULT_VARIANTS = ("naive", "raw", "ours")
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
    setup: str
    published: int
    forwarded: int
    lost: int
    seconds: float
    msgs_per_second: float
    latency_ms: dict[str, float]
    cpu_seconds: float
    rss_mb: float  # at the end
    rss_start_mb: float  # once subscribed
    rss_peak_mb: float

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


@dataclass(frozen=True)
class Setup:
    """What is measured: where to publish and subscribe (a cluster's node, or the
    standalone server), and the sink kind (``stream`` or ``channel``)."""

    server: Address
    cluster: bool = False
    sink: str = "stream"

    @property
    def name(self) -> str:
        return f"channel -> {self.sink}, {'cluster' if self.cluster else 'standalone'}"

    def client(self) -> redis.Redis | RedisCluster:
        if self.cluster:
            return RedisCluster(host=self.server.host, port=self.server.port, socket_timeout=30)
        return redis.Redis(host=self.server.host, port=self.server.port, socket_timeout=30)


class RssSampler:
    """The forwarder's RSS every half second while it runs: start, peak and end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._halt.is_set():
            rss = _cpu_and_rss(self.pid)[1]
            if rss:
                self.samples.append(rss)
            self._halt.wait(0.5)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        self._thread.join(5)


def run_variant(
    variant: str, setup: Setup, scenario: Scenario, progress: Callable[[str], None]
) -> Result:
    tag = uuid.uuid4().hex[:8]
    server = setup.server
    prefix = f"bench.{tag}.{variant}."
    out = f"bench:{tag}:{variant}:" if setup.sink == "stream" else f"out.{tag}.{variant}."
    outputs = [f"{out}{prefix}{i}" for i in range(scenario.channels)]
    client = setup.client()
    collector = None
    if setup.sink == "channel":
        collector = _start(
            "collector",
            "redis_forwarder.bench.collector",
            server.host,
            str(server.port),
            out + "*",
            str(scenario.messages),
            str(SETTLE),
            "300",
        )
    forwarder = _start(
        variant,
        "redis_forwarder.bench.forwarders",
        variant,
        setup.sink,
        "cluster" if setup.cluster else "standalone",
        server.host,
        str(server.port),
        prefix + "*",
        out,
    )
    try:
        cpu_before, _ = _cpu_and_rss(forwarder.pid)
        progress(f"{scenario.name}: {variant}: publishing {scenario.messages} messages")
        with RssSampler(forwarder.pid) as rss:
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
                timeout=max(600, 2 * scenario.messages / scenario.rate if scenario.rate else 0),
            )
            count = int(published.stdout.split()[0])
            what = f"{scenario.name}: {variant}"
            if collector is None:
                forwarded = _wait_settled(client, outputs, count, progress, what)
            else:
                progress(f"{what}: waiting for the collector")
                collected = json.loads(collector.communicate(timeout=330)[0])
                forwarded = collected["count"]
        cpu_after, _ = _cpu_and_rss(forwarder.pid)
    finally:
        for process in (forwarder, collector):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
    if collector is None:
        latencies, first_publish_us, last_ms = _latencies(client, outputs)
        seconds = max(1e-6, last_ms / 1000 - first_publish_us / 1e6) if latencies else 0.0
    else:
        latencies = collected["latencies_ms"]
        seconds = (collected["last_receive_us"] - collected["first_publish_us"]) / 1e6
    for output in outputs:  # one at a time: a cluster refuses keys of several slots
        client.delete(output)
    ordered = sorted(latencies)
    samples = rss.samples or [0.0]
    return Result(
        variant=variant,
        scenario=scenario.name,
        setup=setup.name,
        published=count,
        forwarded=forwarded,
        lost=count - forwarded,
        seconds=round(seconds, 3),
        msgs_per_second=round(forwarded / seconds) if seconds > 0 else 0.0,
        latency_ms={
            "p50": percentile(ordered, 0.5),
            "p99": percentile(ordered, 0.99),
            "p99.9": percentile(ordered, 0.999),
            "max": ordered[-1] if ordered else float("nan"),
        },
        cpu_seconds=round(cpu_after - cpu_before, 2),
        rss_mb=round(samples[-1], 1),
        rss_start_mb=round(samples[0], 1),
        rss_peak_mb=round(max(samples), 1),
    )


def _start(what: str, module: str, *args: str) -> subprocess.Popen[str]:
    """A bench process, once it printed "ready"."""
    process = subprocess.Popen(
        _python(module, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        _, errors = process.communicate(timeout=10)
        raise ForwarderError(f"the {what} process did not start: {errors.strip()[-2000:]}")
    return process


def _wait_settled(
    client: Any, streams: list[str], expected: int, progress: Callable[[str], None], what: str
) -> int:
    deadline = Deadline(300)
    length, still_since = -1, time.monotonic()
    while not deadline.expired:
        current = sum(int(client.xlen(stream)) for stream in streams)
        if current != length:
            length, still_since = current, time.monotonic()
            progress(f"{what}: {current}/{expected} forwarded")
        if length >= expected or time.monotonic() - still_since > SETTLE:
            return length
        time.sleep(0.1)
    return length


def _latencies(client: Any, streams: list[str]) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    first_publish_us, last_entry_ms = 0, 0
    for stream in streams:
        first, last = _stream_latencies(client, stream, latencies)
        if first and (not first_publish_us or first < first_publish_us):
            first_publish_us = first
        last_entry_ms = max(last_entry_ms, last)
    return latencies, first_publish_us, last_entry_ms


def _stream_latencies(client: Any, stream: str, latencies: list[float]) -> tuple[int, int]:
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
    return first_publish_us, last_entry_ms
