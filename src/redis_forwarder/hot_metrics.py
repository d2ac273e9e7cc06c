"""The counts a task makes once per batch (received, batches, batch size, forwarded,
latency), kept as plain numbers and turned into Prometheus samples only when scraped.

Why (issue 16): when publishers send one message at a time, a batch is one message,
and these five counts went through five prometheus_client calls per message, each a
few Python frames and a lock: the largest Python cost left on the data path
(py-spy). Here a count is an addition on an attribute, a histogram's observation a
``bisect`` and an addition; the scrape reads them (the metric names, labels, help
texts and buckets are what they were).

One :class:`HotCounts` per route x shard lives as long as the node's registry, as a
Prometheus child would: a task's replacement counts on where its predecessor stopped.
The HTTP thread reads while the event loop adds; each number is read whole (the GIL),
and a histogram's count is taken from its buckets, so a scrape is always consistent
within a series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LABELS = ["route", "shard"]
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
HELP = {
    "received": "Messages (pub/sub) or entries (streams) taken from the source, oversized "
    "ones included; a stream entry claimed again counts again",
    "forwarded": "Messages the sink answered (refusals included: see forwarder_refused_writes)",
    "batches": "Batches handed to the sink (one read, one pipelined write)",
    "size": "Messages per batch (one read, one pipelined write)",
    "latency": "Pub/sub: from reading a batch to the sink's last answer for it. Streams: from "
    "the entry's id (its time on the source) to the sink's answer",
}


class HotCounts:
    """One route x shard's per-batch counts."""

    __slots__ = (
        "batches",
        "forwarded",
        "latencies",
        "latency_sum",
        "received",
        "size_sum",
        "sizes",
    )

    def __init__(self) -> None:
        self.received = 0
        self.forwarded = 0
        self.batches = 0
        self.sizes = [0] * (len(SIZE_BUCKETS) + 1)  # the last: over every bound (+Inf)
        self.size_sum = 0
        self.latencies = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def batch(self, read: int, written: int) -> None:
        self.received += read
        if written:
            self.batches += 1
            self.sizes[bisect_left(SIZE_BUCKETS, written)] += 1
            self.size_sum += written

    def answered(self, count: int, seconds: float) -> None:
        self.forwarded += count
        self.latencies[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds


class HotCollector(Collector):
    """The registry's collector of every route x shard's :class:`HotCounts`."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], HotCounts] = {}

    def of(self, route: str, shard: str) -> HotCounts:
        return self._counts.setdefault((route, shard), HotCounts())

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "forwarder_received_messages", HELP["received"], labels=LABELS
        )
        forwarded = CounterMetricFamily(
            "forwarder_forwarded_messages", HELP["forwarded"], labels=LABELS
        )
        batches = CounterMetricFamily("forwarder_batches", HELP["batches"], labels=LABELS)
        sizes = HistogramMetricFamily("forwarder_batch_size", HELP["size"], labels=LABELS)
        latency = HistogramMetricFamily("forwarder_latency_seconds", HELP["latency"], labels=LABELS)
        for (route, shard), counts in list(self._counts.items()):  # one C call: atomic
            labels = [route, shard]
            received.add_metric(labels, counts.received)
            forwarded.add_metric(labels, counts.forwarded)
            batches.add_metric(labels, counts.batches)
            sizes.add_metric(labels, _buckets(SIZE_BUCKETS, counts.sizes), counts.size_sum)
            latency.add_metric(
                labels, _buckets(LATENCY_BUCKETS, counts.latencies), counts.latency_sum
            )
        yield from (received, forwarded, batches, sizes, latency)


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative buckets, as prometheus_client's Histogram writes them."""
    cumulative, total = [], 0
    for bound, count in zip((*bounds, float("inf")), list(counts), strict=True):
        total += count
        cumulative.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
    return cumulative
