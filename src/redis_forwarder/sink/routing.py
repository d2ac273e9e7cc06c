"""Where a key goes on a cluster target, and how a sink reaches a node.

A task's sink connections are all opened through one :data:`Connect` the task hands
its sinks (``forwarding.connections``): the task can then reset every one of them at
once when it stops, and refuse to open any after (a sink that opened a connection
lazily, after its task was told to stop, would write for an owner that is gone).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis_forwarder.model import Address, Topology
from redis_forwarder.resp import ConnectionLost, RespConnection
from redis_forwarder.topology.slots import key_slot

# (address, reply timeout) -> an open, authenticated data-path connection
Connect = Callable[[Address, float], Awaitable[RespConnection]]


class RouteCache:
    """Which master each target key goes to, for one topology: hashing a key's slot in
    Python costs more than the rest of a message's work, and targets repeat. Emptied
    when the topology changes, or when it grows past ``LIMIT`` keys."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._topology: Topology | None = None
        self._routes: dict[bytes, Address] = {}

    def of(self, topology: Topology) -> dict[bytes, Address]:
        if topology is not self._topology:
            self._topology, self._routes = topology, {}
        return self._routes

    def route(self, key: bytes) -> Address:
        assert self._topology is not None, "call of() first"
        slot = key_slot(key)
        shard = self._topology.shard_for_slot(slot)
        if shard is None:
            raise ConnectionLost("cluster sink", f"slot {slot} of the target has no master")
        if len(self._routes) >= self.LIMIT:
            self._routes.clear()
        self._routes[key] = shard.master.address
        return shard.master.address
