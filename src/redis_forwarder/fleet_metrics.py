"""The fleet's own metrics, for the alerts that no single node can raise about itself.

A node killed with ``kill -9`` exports nothing: its tasks vanish from every scrape with
it. To see "a task nobody runs", Prometheus must know which tasks should run, and only
the controller does (it plans them). So the controller exports the tasks the fleet
wants (``forwarder_fleet_task_wanted``, one series a task) and how many of them no
member reports running; the alert rules join the first with the nodes' own
``forwarder_task_running`` (``alerts.yml``: ForwarderTaskWithoutOwner). Every other
node exports none of them, and a node that stops being the controller removes its
series at once (two controllers' series would double the fleet's tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Set

from prometheus_client import CollectorRegistry, Gauge

from redis_forwarder.model import TaskKey

# What a takeover needs a standby's ring to reach back, past the session timeout: the
# controller's cycle that moves the task and the new owner's claim (about a second
# each), with a margin.
TAKEOVER_MARGIN = 3.0


class FleetGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.member = Gauge(
            "forwarder_fleet_member",
            "1 on a node of a fleet (a [coordination] section), 0 on a node running alone",
            registry=registry,
        )
        self.wanted = Gauge(
            "forwarder_fleet_task_wanted",
            "1 for each task the fleet should run (route x shard of the deployment it "
            "reads), exported "
            "by the controller only: join it with forwarder_task_running to find a task "
            "that no node runs",
            ("route", "shard"),
            registry=registry,
        )
        self.unowned = Gauge(
            "forwarder_fleet_unowned_tasks",
            "Tasks the fleet wants that no member's last report says it runs (the "
            "controller's count; 0 on every other node; a dead member counts as running "
            "them until its session expires)",
            registry=registry,
        )
        self.takeover_needs = Gauge(
            "forwarder_standby_takeover_needs_seconds",
            "How far back a standby's ring must reach for a takeover to replay what a dead "
            "owner had not written: the session timeout, a controller cycle and a claim "
            "(compare forwarder_standby_ring_seconds)",
            registry=registry,
        )
        self._exported: frozenset[TaskKey] = frozenset()
        self._controller = False

    def configure(self, session_timeout: float | None) -> None:
        """``session_timeout``: the fleet's, or None for a node running alone."""
        self.member.set(0 if session_timeout is None else 1)
        self.takeover_needs.set(0 if session_timeout is None else session_timeout + TAKEOVER_MARGIN)

    def observe(
        self, controller: bool, wanted: Set[TaskKey], running: Callable[[], Set[TaskKey]]
    ) -> None:
        """Each cycle. ``running``: the tasks the members' last reports run, asked only
        when scraped (at 20,000 tasks, a set difference a cycle would be waste)."""
        if not controller:
            if self._controller:
                self._controller = False
                self.wanted.clear()
                self._exported = frozenset()
                self.unowned.set_function(_none)  # a gauge with a function ignores set()
            return
        if not self._controller:
            self._controller = True
            self.unowned.set_function(lambda: len(self._exported - running()))
        if wanted == self._exported:
            return
        current = frozenset(wanted)
        for route, shard in self._exported - current:
            self.wanted.remove(route, shard)
        for route, shard in current - self._exported:
            self.wanted.labels(route=route, shard=shard).set(1)
        self._exported = current


def _none() -> float:
    return 0.0
