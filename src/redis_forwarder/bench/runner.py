"""Running the bench: each forwarder variant in its own process against the same
Redis (standalone, or a cluster), the same load, in the same run; what it forwards
read back on receipt.

The publisher (publisher.py) sends one PUBLISH per write at a fixed rate, paced, or
CHUNK per write when asked, or pipelined at full speed. A collector process
(collector.py) reads the sink as it is written: a pattern subscription for channel
sinks, blocking XREADs of the output streams for stream sinks; it takes each
message's latency on receipt (µs clock) against the publish time in the payload, and
counts distinct messages. Throughput is messages forwarded per second from the first
publish to the last receipt. CPU is the forwarder process's own (every thread's time
on a CPU, ns, from /proc), from ready until the collector is done; per forwarded
message, in µs. Published minus forwarded is reported as lost: Redis pub/sub keeps
nothing for a subscriber that falls too far behind (client-output-buffer-limit
pubsub).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from redis_forwarder.bench.publisher import FULL_SPEED_CHUNK
from redis_forwarder.errors import ForwarderError
from redis_forwarder.model import Address
from redis_forwarder.topology import key_slot

# "marks": ours with the watermarks of a route with a standby (issue 15); not run
# unless asked for (--variants).
# "ours-asyncio": ours on asyncio's own event loop instead of uvloop (issue 16).
# "echoes": ours as one direction of a pub/sub bridge with echo suppression (issue 20).
VARIANTS = ("naive", "raw", "ours", "ours-asyncio", "marks", "echoes")
DEFAULT_VARIANTS = ("naive", "raw", "ours")
SETTLE = 1.0  # seconds without growth that mean the forwarder is done
COLLECTOR = "redis_forwarder.bench.collector"


@dataclass(frozen=True)
class Scenario:
    name: str
    messages: int
    size: int = 100
    rate: float = 0.0  # 0: as fast as possible
    channels: int = 16
    chunk: int = 1  # messages per write at a fixed rate (at full speed: 200)

    @classmethod
    def paced(cls, rate: float, seconds: float, size: int = 100, chunk: int = 1) -> Scenario:
        """``rate`` msg/s for ``seconds``: "10000 msg/s", or "10000 msg/s, chunk 200"."""
        name = f"{rate:.0f} msg/s" + (f", chunk {chunk}" if chunk > 1 else "")
        return cls(name, max(1, int(rate * seconds)), size, rate, chunk=chunk)


@dataclass(frozen=True)
class Result:
    """One variant in one scenario. ``to_json`` is the documented ``--json`` row
    (docs/performance.md, "JSON"): fields are only ever added, never renamed."""

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
    rate: float = 0.0  # asked, msg/s; 0 at full speed
    achieved_rate: float = 0.0  # the publisher's, msg/s; 0 at full speed
    chunk: int = 1  # messages per publisher write
    publisher_writes: int = 0  # the publisher's socket writes
    cpu_us_per_message: float = 0.0  # forwarder CPU per forwarded message

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


def _cpu_seconds(pid: int) -> float:
    """The process's time on a CPU: every thread's from /proc/PID/task/*/schedstat (ns),
    or, where the kernel keeps no schedstat, user + system ticks (10 ms)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    total, found = 0, False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended, or no schedstat
    return total / 1e9 if found else _cpu_and_rss(pid)[0]


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
    publish_timeout = max(600, 2 * scenario.messages / scenario.rate if scenario.rate else 0)
    collect_args = (str(scenario.messages), str(SETTLE), str(publish_timeout + 60))
    if setup.sink == "channel":
        where = (server.host, str(server.port), out + "*")
        collector = _start("collector", COLLECTOR, "channel", *where, *collect_args)
    else:
        groups = _stream_groups(setup, outputs)
        collector = _start("collector", COLLECTOR, "stream", *collect_args, *groups)
    try:
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
    except BaseException:
        collector.kill()  # not left reading after a forwarder that never started
        collector.wait(10)
        raise
    try:
        cpu_before = _cpu_seconds(forwarder.pid)
        progress(f"{scenario.name}: {variant}: publishing {scenario.messages} messages")
        with RssSampler(forwarder.pid) as rss:
            published = json.loads(
                subprocess.run(
                    _python(
                        "redis_forwarder.bench.publisher",
                        server.host,
                        str(server.port),
                        str(scenario.messages),
                        str(scenario.size),
                        str(scenario.rate),
                        str(scenario.channels),
                        prefix,
                        str(scenario.chunk),
                    ),
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=publish_timeout,
                ).stdout
            )
            progress(f"{scenario.name}: {variant}: waiting for the collector")
            collected = _report(collector, publish_timeout + 90)
        cpu_after = _cpu_seconds(forwarder.pid)
    finally:
        for process in (forwarder, collector):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
    count, forwarded = published["published"], collected["count"]
    latencies = collected["latencies_ms"]
    seconds = (collected["last_receive_us"] - collected["first_publish_us"]) / 1e6
    for output in outputs:  # one at a time: a cluster refuses keys of several slots
        client.delete(output)
    ordered = sorted(latencies)
    samples = rss.samples or [0.0]
    cpu = cpu_after - cpu_before
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
        cpu_seconds=round(cpu, 3),
        rss_mb=round(samples[-1], 1),
        rss_start_mb=round(samples[0], 1),
        rss_peak_mb=round(max(samples), 1),
        rate=scenario.rate,
        achieved_rate=round(published["achieved_rate"], 1),
        chunk=scenario.chunk if scenario.rate else FULL_SPEED_CHUNK,
        publisher_writes=published["writes"],
        cpu_us_per_message=round(cpu * 1e6 / forwarded, 2) if forwarded else 0.0,
    )


def _stream_groups(setup: Setup, streams: list[str]) -> list[str]:
    """The collector's ``HOST:PORT=STREAM,...`` arguments, an XREAD each: all on the
    server, or on a cluster the streams of each slot on its master (CLUSTER SLOTS)."""
    if not setup.cluster:
        return [f"{setup.server}={','.join(streams)}"]
    owners: dict[int, str] = {}
    seed = redis.Redis(host=setup.server.host, port=setup.server.port, socket_timeout=30)
    for start, end, master, *_replicas in seed.cluster("SLOTS"):
        host = master[0].decode() if isinstance(master[0], bytes) else master[0]
        owners.update({slot: f"{host}:{master[1]}" for slot in range(start, end + 1)})
    groups: dict[int, list[str]] = {}
    for stream in streams:
        groups.setdefault(key_slot(stream.encode()), []).append(stream)
    return [f"{owners[slot]}={','.join(names)}" for slot, names in groups.items()]


def _report(collector: subprocess.Popen[str], timeout: float) -> Any:
    """The collector's JSON line, or why it has none."""
    output, errors = collector.communicate(timeout=timeout)
    try:
        return json.loads(output)
    except ValueError:
        raise ForwarderError(f"the collector failed: {errors.strip()[-2000:]}") from None


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
