"""The fleet's metrics: only the controller exports the tasks the fleet wants, and a node
that stops being the controller takes its series away at once (two controllers' series
would double every task in the alert that joins them with the nodes' running tasks)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from redis_forwarder.fleet_metrics import TAKEOVER_MARGIN, FleetGauges


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(sorted(s.labels.values())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


def test_only_the_controller_exports_the_wanted_tasks_and_the_unowned_count() -> None:
    registry = CollectorRegistry()
    gauges = FleetGauges(registry)
    gauges.configure(session_timeout=4.0)
    running = {("orders", "alpha")}
    wanted = {("orders", "alpha"), ("orders", "beta"), ("audit", "alpha")}

    gauges.observe(False, wanted, lambda: running)
    assert _samples(registry, "forwarder_fleet_task_wanted") == {}
    assert _samples(registry, "forwarder_fleet_member") == {(): 1.0}
    assert _samples(registry, "forwarder_standby_takeover_needs_seconds") == {
        (): 4.0 + TAKEOVER_MARGIN
    }

    gauges.observe(True, wanted, lambda: running)
    assert _samples(registry, "forwarder_fleet_task_wanted") == {
        ("alpha", "orders"): 1.0,
        ("beta", "orders"): 1.0,
        ("alpha", "audit"): 1.0,
    }
    assert _samples(registry, "forwarder_fleet_unowned_tasks") == {(): 2.0}
    running.add(("audit", "alpha"))  # read when scraped
    assert _samples(registry, "forwarder_fleet_unowned_tasks") == {(): 1.0}

    gauges.observe(True, {("orders", "alpha")}, lambda: running)  # beta's shard went away
    assert _samples(registry, "forwarder_fleet_task_wanted") == {("alpha", "orders"): 1.0}

    gauges.observe(False, wanted, lambda: running)  # no longer the controller
    assert _samples(registry, "forwarder_fleet_task_wanted") == {}
    assert _samples(registry, "forwarder_fleet_unowned_tasks") == {(): 0.0}


def test_a_node_alone_is_no_fleet_member() -> None:
    registry = CollectorRegistry()
    FleetGauges(registry).configure(session_timeout=None)
    assert _samples(registry, "forwarder_fleet_member") == {(): 0.0}
    assert _samples(registry, "forwarder_standby_takeover_needs_seconds") == {(): 0.0}
