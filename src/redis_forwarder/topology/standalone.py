"""A standalone server is one shard; its id is its address."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from redis_forwarder.errors import UnreachableError, WrongServerError
from redis_forwarder.model import Address, DeploymentKind, RedisNode, Shard, Topology
from redis_forwarder.topology.connections import Connections, NodeFailed

if TYPE_CHECKING:
    from redis_forwarder.routes import RouteConfig

# How a standalone replica's view is learned; ``replica_of`` reads the master back.
REPLICA_OF = "ROLE says replica of "


async def discover_standalone(address: Address, conns: Connections) -> Topology:
    try:
        role = await conns.call(address, "ROLE")
        cluster = await conns.call(address, "INFO", "cluster")
    except NodeFailed as exc:
        raise UnreachableError("server", {str(address): exc.reason}) from None
    if role[0] == "sentinel":
        raise WrongServerError(
            f"{address} is a sentinel; use kind = sentinel with the master names to follow"
        )
    if int(cluster.get("cluster_enabled", 0)):
        raise WrongServerError(
            f"{address} is a Redis Cluster node; use kind = cluster with it as a seed"
        )
    if role[0] == "master":
        replicas = tuple(RedisNode(Address(str(r[0]), int(r[1]))) for r in role[2])
        learned = "ROLE says master"
    else:
        replicas = ()
        learned = f"{REPLICA_OF}{role[1]}:{role[2]}; read as configured"
    shard = Shard(str(address), RedisNode(address), tuple(sorted(replicas)), learned=learned)
    return Topology(DeploymentKind.STANDALONE, (shard,))


def replica_of(topology: Topology) -> str | None:
    """The master a standalone server named when it answered ROLE as a replica
    ("host:port"), or None when it is a master (or the deployment is not standalone).
    A replica refuses every write (READONLY): nothing may be written to it."""
    if topology.kind is not DeploymentKind.STANDALONE:
        return None
    learned = topology.shards[0].learned
    if not learned.startswith(REPLICA_OF):
        return None
    return learned[len(REPLICA_OF) :].split(";", 1)[0]


def refuse_replicas(topologies: Mapping[str, Topology], routes: Sequence[RouteConfig]) -> None:
    """Raise WrongServerError (exit 5) when a standalone deployment (``source`` or a
    target, by name) is a replica that routes write to (to.target) or read streams
    from (from.deployment: XREADGROUP writes the group): it would refuse every write
    while the node seemed to run (issue 14). Names the master that ROLE names."""
    for name, topology in topologies.items():
        master = replica_of(topology)
        if master is None:
            continue
        writers = [r.name for r in routes if r.to.target == name]
        readers = [r.name for r in routes if r.from_.deployment == name and r.from_.streams]
        uses = [f"to.target = {name!r}: {', '.join(writers)}"] if writers else []
        if readers:
            uses.append(f"streams, read with XREADGROUP (a write): {', '.join(readers)}")
        if uses:
            table = "[source]" if name == "source" else f"[targets.{name}]"
            raise WrongServerError(
                f"{topology.shards[0].id} is a replica of {master}, which refuses every "
                f"write (READONLY), and routes write to it ({'; '.join(uses)}); give its "
                f"master, {master}, in {table} addresses"
            )
