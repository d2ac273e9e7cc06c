"""A ring's gauges and eviction count across the rings one task has in its life."""

from __future__ import annotations

from redis_forwarder.observe import Metrics
from redis_forwarder.standby.metrics import RingGauges
from redis_forwarder.standby.ring import Ring


def sample(metrics: Metrics, name: str) -> float:
    return sum(s.value for f in metrics.registry.collect() for s in f.samples if s.name == name)


def test_a_new_ring_counts_its_own_evictions_from_zero() -> None:
    """A standby whose old ring had evicted messages by age yields later with a new
    ring (``forwarding.yielding``): counted from the old ring's count, the first batch
    made the counter go down, and prometheus_client raised on every batch."""
    metrics = Metrics()
    gauges = RingGauges(metrics.standby, "orders", "a")
    old = Ring(window=1.0, max_bytes=1 << 20)
    gauges.track(old, lambda: 10.0)
    old.add([(b"c", b"p", b"")] * 5, now=0.0)
    old.add([(b"c", b"p", b"")], now=5.0)  # the first five fall off by age
    gauges.evicted(old)
    assert sample(metrics, "forwarder_standby_evicted_messages_total") == 5
    new = Ring(window=1.0, max_bytes=1 << 20)
    gauges.track(new, lambda: 10.0)
    new.add([(b"c", b"p", b"")], now=6.0)
    gauges.evicted(new)  # raised ValueError before
    new.add([(b"c", b"p", b"")], now=9.0)
    gauges.evicted(new)
    assert sample(metrics, "forwarder_standby_evicted_messages_total") == 6


def test_the_yields_counter_exists_at_zero_from_the_start() -> None:
    metrics = Metrics()
    RingGauges(metrics.standby, "orders", "a")
    names = {s.name for f in metrics.registry.collect() for s in f.samples}
    assert "forwarder_standby_yields_total" in names
