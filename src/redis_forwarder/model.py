"""Frozen values shared across the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, order=True)
class Address:
    """A TCP endpoint, ``host:port``. IPv6 hosts are written ``[::1]:port``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``; raise ``ValueError`` with a message fit for the user."""
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]:")
        else:
            host, sep, rest = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:7000)")
        try:
            port = int(rest)
        except ValueError:
            raise ValueError(f"{text!r} has a port that is not a number") from None
        if not 0 < port < 65536:
            raise ValueError(f"{text!r} has port {port}, outside 1..65535")
        return cls(host, port)

    def with_port(self, port: int) -> Address:
        return Address(self.host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class DeploymentKind(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


SlotRange = tuple[int, int]  # inclusive, as Redis writes them
TaskKey = tuple[str, str]  # (route name, shard id): one task, what a node owns and runs


@dataclass(frozen=True, order=True)
class RedisNode:
    """One redis-server. ``node_id`` is the cluster node id, empty elsewhere."""

    address: Address
    node_id: str = field(default="", compare=False)

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True)
class Shard:
    """The unit of ownership: a master with its replicas (and, on a cluster, its slots).

    ``id`` survives a failover: sentinel, the master name; cluster, the Redis shard id
    where Redis has one (7.2+), else an id carried over from the previous view (see
    docs/topology.md); standalone, the server's address. ``learned`` says how this view
    was obtained and takes no part in comparisons.
    """

    id: str
    master: RedisNode
    replicas: tuple[RedisNode, ...] = ()
    slots: tuple[SlotRange, ...] = ()
    learned: str = field(default="", compare=False)

    def slot_set(self) -> frozenset[int]:
        return frozenset(s for start, end in self.slots for s in range(start, end + 1))


@dataclass(frozen=True)
class Topology:
    """A snapshot of a deployment's shards, ordered by id."""

    kind: DeploymentKind
    shards: tuple[Shard, ...]

    def shard(self, shard_id: str) -> Shard | None:
        return next((s for s in self.shards if s.id == shard_id), None)

    def shard_for_slot(self, slot: int) -> Shard | None:
        for shard in self.shards:
            if any(start <= slot <= end for start, end in shard.slots):
                return shard
        return None
