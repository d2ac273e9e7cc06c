"""Which tasks a topology calls for: a task is a route on a shard. Pure.

- Classic pub/sub (channels, patterns): a task per shard on standalone and Sentinel
  deployments (each master has its own publishers). On a cluster, PUBLISH reaches every
  node, so one subscription sees every message: one task per route, on the *home*
  shard (the smallest shard id), which is exactly once per message, not once per node.
- Sharded pub/sub: on a cluster, a task per shard that serves the slot of at least one
  of the route's channels, subscribed to those channels only; elsewhere, a task per
  shard with every channel.
- Streams: a task per shard.
"""

from __future__ import annotations

from redis_forwarder.config import RouteConfig
from redis_forwarder.model import DeploymentKind, Topology
from redis_forwarder.topology.slots import key_slot

TaskKey = tuple[str, str]  # route name, shard id


def sharded_channels(route: RouteConfig, shard_id: str, topology: Topology) -> list[str]:
    """The sharded channels of ``route`` that ``shard_id`` serves now."""
    if topology.kind is not DeploymentKind.CLUSTER:
        return list(route.from_.sharded)
    shard = topology.shard(shard_id)
    if shard is None:
        return []
    slots = shard.slot_set()
    return [c for c in route.from_.sharded if key_slot(c) in slots]


def wanted_tasks(routes: list[RouteConfig], topology: Topology) -> set[TaskKey]:
    shard_ids = sorted(s.id for s in topology.shards)
    if not shard_ids:
        return set()
    cluster = topology.kind is DeploymentKind.CLUSTER
    wanted: set[TaskKey] = set()
    for route in routes:
        if route.from_.sharded:
            wanted.update(
                (route.name, shard)
                for shard in shard_ids
                if sharded_channels(route, shard, topology)
            )
        elif cluster and not route.from_.streams:
            wanted.add((route.name, shard_ids[0]))
        else:
            wanted.update((route.name, shard) for shard in shard_ids)
    return wanted
