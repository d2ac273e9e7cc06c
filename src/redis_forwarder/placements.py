"""Where a node's tasks find their servers: a :class:`Placement` per task, read from the
node's topology watchers and settings at each attempt. Apart from ``node`` so the
reconcile loop stays one job; apart from ``forwarding`` because it knows the node's
deployments (``source`` and named targets) and their watchers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.forwarding.echoes import EchoBook
from redis_forwarder.forwarding.placement import (
    ClusterTarget,
    Endpoint,
    Placement,
    candidates,
    pick,
)
from redis_forwarder.gate import Gate
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.resp import ConnectionLost
from redis_forwarder.routes import RouteConfig
from redis_forwarder.settings import DeploymentSettings
from redis_forwarder.topology import TopologyWatcher
from redis_forwarder.work import keys_served

SOURCE = "source"


class Placements:
    def __init__(
        self,
        config: ForwarderConfig,
        settings: Mapping[str, DeploymentSettings],
        watchers: Mapping[str, TopologyWatcher],
    ) -> None:
        self.config = config
        self.settings = settings
        self.watchers = watchers
        self.echoes = EchoBook()  # one per node: both directions of a bridge run here

    def for_task(self, route: RouteConfig, shard: str, gate: Gate) -> Placement:
        target = route.to.target
        cluster_sink = None
        if self.settings[target].kind is DeploymentKind.CLUSTER:
            watcher = self.watchers[target]
            cluster_sink = ClusterTarget(
                lambda: watcher.current, self.settings[target].redis, watcher.refresh_soon
            )
        read = route.from_.deployment  # the source, or a target (issue 20)
        source = self.watchers[read]
        classic = bool(route.from_.channels or route.from_.patterns)
        any_node = classic and self.settings[read].kind is DeploymentKind.CLUSTER
        replicas = self.config.deployment(read).read_from == "replica"
        return Placement(
            # XREADGROUP writes (the group's pending list): streams read from masters.
            locate_source=self._locator(
                read, shard, replicas=replicas and not route.from_.streams, any_node=any_node
            ),
            # Into the deployment it reads: the same shard (the same master).
            locate_sink=self._locator(target, shard if target == read else None),
            cluster_sink=cluster_sink,
            keys_served=lambda: keys_served(route, shard, source.current),
            gate=gate,
            on_lost=self._on_lost(read, target),
            reads_any_node=any_node,
            # A standby hears what the owner hears, in the same order: the master's
            # replicas do under Sentinel (the replication stream), but a cluster's
            # replica hears PUBLISH over the bus, interleaved otherwise than on its
            # master when several nodes publish; so classic pub/sub on a cluster stands
            # by on the owner's node (a CI run of migrate-slots: a hand-off between a
            # master and its replica lost 1 and duplicated 1).
            locate_standby=self._standby_locator(route, read, shard, replicas, any_node),
            echoes=self.echoes if route.to.echo == "suppress" else None,
        )

    def _standby_locator(
        self, route: RouteConfig, read: str, shard: str, replicas: bool, any_node: bool
    ) -> Callable[[frozenset[Address]], Endpoint]:
        """Where a standby listens: on a replica first (the master's load does not
        double), except where it must hear what the owner hears, in the same order and
        as early: classic pub/sub on a cluster (see ``for_task``), and a pub/sub
        bridge with echo suppression, whose standby must hear each original before its
        echo comes back from the other side (``forwarding/echoes.py``; from a replica,
        a kill test's takeover sent 5 of the other side's messages back home)."""
        if route.to.echo == "suppress":
            return self._locator(read, shard, replicas=replicas, any_node=any_node)
        return self._locator(read, shard, replicas=not any_node, any_node=any_node)

    def _locator(
        self, deployment: str, shard: str | None, replicas: bool = False, any_node: bool = False
    ) -> Callable[[frozenset[Address]], Endpoint]:
        """Where a task connects now (``placement.candidates``): the first candidate of
        the deployment's current topology that has not just failed it (``pick``)."""
        credentials = self.settings[deployment].redis

        def locate(avoid: frozenset[Address]) -> Endpoint:
            topology = self.watchers[deployment].current
            found = candidates(topology, shard, replicas=replicas, any_node=any_node)
            if not found:  # the reconcile loop will stop the task
                raise ConnectionLost(deployment, f"shard {shard} is not in the topology")
            return Endpoint(pick(found, avoid), credentials)

        return locate

    def _on_lost(self, read: str, target: str) -> Callable[[str], None]:
        def lost(reason: str) -> None:
            self.watchers[read].refresh_soon(reason)
            if target != read:
                self.watchers[target].refresh_soon(reason)

        return lost
