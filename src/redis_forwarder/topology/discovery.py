"""``discover``: seed addresses in, a :class:`Topology` out, for any kind of deployment."""

from __future__ import annotations

import asyncio

from redis_forwarder.model import DeploymentKind, Topology
from redis_forwarder.settings import DeploymentSettings
from redis_forwarder.topology.cluster import discover_cluster
from redis_forwarder.topology.connections import Connections
from redis_forwarder.topology.sentinel import discover_sentinel
from redis_forwarder.topology.standalone import discover_standalone


class Discoverer:
    """Discovery with its connections kept open between calls (the watcher's case).

    Use as an async context manager, or call :meth:`close`.
    """

    def __init__(self, settings: DeploymentSettings) -> None:
        self.settings = settings
        self.nodes = Connections(settings.redis, settings.socket_timeout, "redis")
        self.sentinels = Connections(settings.sentinel, settings.socket_timeout, "sentinel")

    @property
    def answered_at(self) -> float:
        """When a server or sentinel of the deployment last answered (monotonic)."""
        return max(self.nodes.answered_at, self.sentinels.answered_at)

    async def discover(self, previous: Topology | None = None) -> Topology:
        """One fresh view. ``previous`` lets a cluster keep shard ids across failovers."""
        kind = self.settings.kind
        if kind is DeploymentKind.SENTINEL:
            return await discover_sentinel(self.settings, self.sentinels, self.nodes)
        if kind is DeploymentKind.CLUSTER:
            return await discover_cluster(self.settings.addresses, self.nodes, previous)
        return await discover_standalone(self.settings.addresses[0], self.nodes)

    async def close(self) -> None:
        await self.nodes.close()
        await self.sentinels.close()

    async def __aenter__(self) -> Discoverer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


async def discover_async(settings: DeploymentSettings) -> Topology:
    async with Discoverer(settings) as discoverer:
        return await discoverer.discover()


def discover(settings: DeploymentSettings) -> Topology:
    """The deployment's shards now. Raises a :class:`DiscoveryError` subclass when the
    deployment cannot be reached or is not what ``settings`` says."""
    return asyncio.run(discover_async(settings))
