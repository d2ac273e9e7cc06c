"""The per-batch counts kept as plain numbers (hot_metrics) expose exactly what
prometheus_client's Counter and Histogram did for the same observations: same names,
labels, buckets, counts and sums (issue 16 moved them off prometheus_client's path)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from redis_forwarder.hot_metrics import HELP, LATENCY_BUCKETS, SIZE_BUCKETS, HotCollector
from redis_forwarder.observe import Metrics

BATCHES = [(1, 1, 0.0003), (7, 7, 0.0012), (3, 0, 0.0), (20000, 20000, 0.5), (50000, 49999, 12.0)]


def samples(text: bytes) -> set[str]:
    """The lines (HELP, TYPE and samples), without the _created series."""
    return {line for line in text.decode().splitlines() if line and "_created" not in line}


def test_hot_counts_expose_what_prometheus_client_did() -> None:
    hot_registry = CollectorRegistry()
    hot = HotCollector()
    hot_registry.register(hot)
    reference = CollectorRegistry()
    labels = ("route", "shard")
    received = Counter("forwarder_received_messages", HELP["received"], labels, registry=reference)
    forwarded = Counter(
        "forwarder_forwarded_messages", HELP["forwarded"], labels, registry=reference
    )
    batches = Counter("forwarder_batches", HELP["batches"], labels, registry=reference)
    sizes = Histogram(
        "forwarder_batch_size", HELP["size"], labels, buckets=SIZE_BUCKETS, registry=reference
    )
    latency = Histogram(
        "forwarder_latency_seconds",
        HELP["latency"],
        labels,
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    for route, shard in (("r1", "s1"), ("r2", "s2")):
        counts = hot.of(route, shard)
        for read, written, seconds in BATCHES:
            counts.batch(read, written)
            received.labels(route, shard).inc(read)
            if written:
                batches.labels(route, shard).inc()
                sizes.labels(route, shard).observe(written)
                counts.answered(written, seconds)
                forwarded.labels(route, shard).inc(written)
                latency.labels(route, shard).observe(seconds)
    assert samples(generate_latest(hot_registry)) == samples(generate_latest(reference))
    assert hot.of("r1", "s1") is hot.of("r1", "s1")  # one per route x shard, kept


def test_the_node_registry_lists_the_hot_metrics_before_any_task() -> None:
    text = generate_latest(Metrics().registry).decode()
    for name in (
        "forwarder_received_messages",
        "forwarder_forwarded_messages",
        "forwarder_batches",
        "forwarder_batch_size",
        "forwarder_latency_seconds",
    ):
        assert f"# TYPE {name}" in text, name
