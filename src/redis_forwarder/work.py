"""Which tasks a topology calls for: a task is a route on a shard. Pure.

- Classic pub/sub (channels, patterns): a task per shard on standalone and Sentinel
  deployments (each master has its own publishers). On a cluster, PUBLISH reaches every
  node, so one subscription sees every message: one task per route, on the *home*
  shard (the smallest shard id), which is exactly once per message, not once per node.
- Sharded pub/sub: on a cluster, a task per shard that serves the slot of at least one
  of the route's channels, subscribed to those channels only; elsewhere, a task per
  shard with every channel.
- Streams: a task per shard on standalone and Sentinel deployments; on a cluster, a
  task per shard that serves the slot of at least one of the route's streams, reading
  those streams only (like sharded channels: each key lives in one slot).

A route reads one deployment (``from.deployment``: the source, or a target: issue 20);
its tasks are that deployment's shards. (route, shard) stays unique: a route names
its deployment.

With ``[coordination]``, a pub/sub route's tasks also want a standby on another node
(``standby_tasks``, issue 15); stream tasks never do: their entries wait in Redis.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis_forwarder.model import DeploymentKind, TaskKey, Topology
from redis_forwarder.routes import RouteConfig
from redis_forwarder.topology.slots import key_slot


def keys_served(route: RouteConfig, shard_id: str, topology: Topology) -> list[str]:
    """The sharded channels or streams of ``route`` that ``shard_id`` serves now."""
    keys = route.from_.sharded or route.from_.streams
    if topology.kind is not DeploymentKind.CLUSTER:
        return list(keys)
    shard = topology.shard(shard_id)
    if shard is None:
        return []
    slots = shard.slot_set()
    return [key for key in keys if key_slot(key) in slots]


def slot_groups(keys: list[str], cluster: bool) -> list[list[str]]:
    """Keys that one multi-key command may name together: on a cluster, those of one
    slot (else CROSSSLOT); elsewhere, all of them. Order kept within each group."""
    if not cluster:
        return [list(keys)] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return list(groups.values())


def wanted_tasks(
    routes: list[RouteConfig], topology: Topology | Mapping[str, Topology]
) -> set[TaskKey]:
    """The tasks the routes call for: (route, shard) for each shard of the deployment
    each route reads. ``topology``: every deployment by name, or the source's alone
    (for configs whose routes all read "source")."""
    if isinstance(topology, Mapping):
        topologies = topology
    elif all(route.from_.deployment == "source" for route in routes):
        topologies = {"source": topology}
    else:  # a caller that knows only the source would count another's tasks as none
        raise ValueError("routes read other deployments than the source: give them all")
    wanted: set[TaskKey] = set()
    for route in routes:
        read = topologies.get(route.from_.deployment)
        if read is not None:
            wanted |= _route_tasks(route, read)
    return wanted


def _route_tasks(route: RouteConfig, topology: Topology) -> set[TaskKey]:
    shard_ids = sorted(s.id for s in topology.shards)
    if not shard_ids:
        return set()
    cluster = topology.kind is DeploymentKind.CLUSTER
    if route.from_.sharded or (cluster and route.from_.streams):
        return {(route.name, shard) for shard in shard_ids if keys_served(route, shard, topology)}
    if cluster:
        return {(route.name, shard_ids[0])}
    return {(route.name, shard) for shard in shard_ids}


def standby_tasks(
    routes: list[RouteConfig], wanted: set[TaskKey], coordinated: bool
) -> set[TaskKey]:
    """The tasks of ``wanted`` that want a standby: those of routes that want one
    (``RouteConfig.wants_standby``), and only in a fleet (a node alone has no other
    node to stand by)."""
    if not coordinated:
        return set()
    names = {route.name for route in routes if route.wants_standby}
    return {task for task in wanted if task[0] in names}
