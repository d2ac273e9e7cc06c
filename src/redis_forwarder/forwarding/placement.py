"""Where a task's servers are now, as the node tells it: :class:`Placement`.

A task never reads the topology itself: it asks its locators at each attempt, naming
the servers to avoid (those that failed since its last success), and tells the node
about each failure (``on_lost``: the node refreshes its topology).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from redis_forwarder.forwarding.echoes import EchoBook
from redis_forwarder.gate import Gate
from redis_forwarder.model import Address, Shard, Topology
from redis_forwarder.settings import Credentials


@dataclass(frozen=True)
class Endpoint:
    """Where to connect now, and as whom."""

    address: Address
    credentials: Credentials


@dataclass(frozen=True)
class ClusterTarget:
    """A sink on a Redis Cluster: its topology now, its credentials, and whom to tell
    about a MOVED answer (the target's topology was behind)."""

    topology: Callable[[], Topology]
    credentials: Credentials
    on_moved: Callable[[str], None]


def _nothing(_reason: str) -> None:
    return None


@dataclass(frozen=True)
class Placement:
    """``locate_source(avoid)`` / ``locate_sink(avoid)``: where to connect now, passing
    over the servers in ``avoid`` while another candidate is left;
    ``cluster_sink``: set when the target is a cluster (each key to its slot's master);
    ``keys_served()``: the sharded channels or streams this shard serves now (None:
    every one the route names); ``gate``: no sink write starts while it is closed;
    ``on_lost(reason)``: a connection of the task failed; ``reads_any_node``: the
    source is classic pub/sub on a cluster, where every node receives every PUBLISH."""

    locate_source: Callable[[frozenset[Address]], Endpoint]
    locate_sink: Callable[[frozenset[Address]], Endpoint]
    cluster_sink: ClusterTarget | None = None
    keys_served: Callable[[], list[str]] | None = None
    gate: Gate | None = None
    on_lost: Callable[[str], None] = field(default=_nothing)
    reads_any_node: bool = False
    # Where a standby listens (issue 15): a replica of the shard first, since Redis
    # propagates PUBLISH to replicas and the master's load does not double.
    locate_standby: Callable[[frozenset[Address]], Endpoint] | None = None
    # The node's echo ledgers, for a route with to.echo = "suppress" (issue 20): its
    # tasks share them with the tasks of the other direction on this node.
    echoes: EchoBook | None = None


def candidates(
    topology: Topology, shard: str | None, *, replicas: bool = False, any_node: bool = False
) -> list[Address]:
    """Where a task may connect, in order of preference: the current master of
    ``shard`` (or, for another deployment, of its first shard). With ``replicas``, the
    shard's replicas come first and the master last, and a failed one is passed over
    (``pick``), so a dead replica costs one retry, not the task. With ``any_node``
    (classic pub/sub on a cluster, where every node receives every PUBLISH), the master
    comes first, then its replicas, then the other masters: a dead master costs one
    retry, not the seconds until the cluster promotes its replica. Empty: the shard is
    not in the topology. Pure."""
    chosen: Shard | None = topology.shard(shard) if shard is not None else topology.shards[0]
    if chosen is None:
        return []
    replica_addresses = [r.address for r in chosen.replicas]
    if any_node:
        others = [s.master.address for s in topology.shards if s is not chosen]
        if replicas:
            return [*replica_addresses, chosen.master.address, *others]
        return [chosen.master.address, *replica_addresses, *others]
    if replicas:
        return [*replica_addresses, chosen.master.address]
    return [chosen.master.address]


def serves(topology: Topology, address: Address) -> bool:
    """``address`` is a master or a replica of ``topology`` now. Pure."""
    return any(
        address == shard.master.address or any(address == r.address for r in shard.replicas)
        for shard in topology.shards
    )


def pick(candidates: list[Address], avoid: frozenset[Address]) -> Address:
    """The first candidate not in ``avoid``; the first of all when every one failed
    (start over). By address, not by position: the topology drops a dead replica from
    the list, and counting failed attempts then skipped the healthy next replica for
    the master (issue 14)."""
    return next((c for c in candidates if c not in avoid), candidates[0])
