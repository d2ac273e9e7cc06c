"""Topology: seed addresses in, shards out, and every change as it happens.

Python API for ops scripts::

    from redis_forwarder.topology import DeploymentSettings, discover, watch
    from redis_forwarder.model import Address, DeploymentKind

    settings = DeploymentSettings(
        DeploymentKind.SENTINEL,
        addresses=(Address.parse("127.0.0.1:26400"),),
        masters=("alpha", "beta"),
    )
    for shard in discover(settings).shards:
        print(shard.id, shard.master, [str(r) for r in shard.replicas])

    async for change in watch(settings):      # in a coroutine
        print(change.to_json())
"""

from __future__ import annotations

from redis_forwarder.settings import Credentials, DeploymentSettings
from redis_forwarder.topology.diff import Change, ChangeKind, diff
from redis_forwarder.topology.discovery import Discoverer, discover, discover_async
from redis_forwarder.topology.slots import key_slot
from redis_forwarder.topology.watcher import TopologyUpdate, TopologyWatcher, watch

__all__ = [
    "Change",
    "ChangeKind",
    "Credentials",
    "DeploymentSettings",
    "Discoverer",
    "TopologyUpdate",
    "TopologyWatcher",
    "diff",
    "discover",
    "discover_async",
    "key_slot",
    "watch",
]
