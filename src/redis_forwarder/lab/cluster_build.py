"""Forming a Redis Cluster from fresh nodes, as the spec says: which node is a master,
which slots it serves, which master each replica follows.

The lab does what ``redis-cli --cluster create`` does, but keeps the spec's exact
master/replica pairing (redis-cli would choose its own on one IP):

1. give every master a distinct config epoch and its slot ranges;
2. introduce every node to the first one (CLUSTER MEET) and wait until all know all;
3. attach each replica to its master (CLUSTER REPLICATE);
4. wait until every node reports cluster_state:ok, every replica is linked, and every
   node sees each replica under its master (CLUSTER NODES): clients ask any node.
"""

from __future__ import annotations

from collections.abc import Callable

from redis_forwarder.lab import probes
from redis_forwarder.lab.readiness import (
    Check,
    Progress,
    cluster_agrees,
    cluster_healthy,
    cluster_met,
    replica_linked,
    wait_for,
)
from redis_forwarder.lab.spec import TopologySpec
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline


def build_cluster(
    spec: TopologySpec,
    timeout: float,
    *,
    progress: Progress | None = None,
    watchdog: Callable[[], None] | None = None,
) -> None:
    """Form the cluster; raise NotReadyError or ProcessDiedError if it does not form."""
    deadline = Deadline(timeout)
    nodes = spec.redis_addresses()
    slot_ranges = spec.slot_ranges()

    for epoch, shard in enumerate(spec.shards, start=1):
        probes.redis_call(shard.master, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        flat = [bound for pair in slot_ranges[shard.name] for bound in pair]
        if flat:
            probes.redis_call(shard.master, "CLUSTER", "ADDSLOTSRANGE", *flat)

    first = nodes[0]
    for node in nodes[1:]:
        probes.redis_call(first, "CLUSTER", "MEET", node.host, node.port)
    wait_for(
        [cluster_met(node, set(nodes)) for node in nodes],
        deadline.remaining,
        progress=progress,
        watchdog=watchdog,
        stage="cluster meet: ",
    )

    replica_checks: list[Check] = []
    roles: dict[Address, Address | None] = {}
    for shard in spec.shards:
        master_id = str(probes.redis_call(shard.master, "CLUSTER", "MYID"))
        roles[shard.master] = None
        for replica in shard.replicas:
            probes.redis_call(replica, "CLUSTER", "REPLICATE", master_id)
            replica_checks.append(replica_linked(replica, shard.master))
            roles[replica] = shard.master
    covered = sum(end - start + 1 for ranges in slot_ranges.values() for start, end in ranges)
    wait_for(
        replica_checks
        + [cluster_healthy(node, len(nodes), covered) for node in nodes]
        + [cluster_agrees(node, roles) for node in nodes],
        deadline.remaining,
        progress=progress,
        watchdog=watchdog,
        stage="cluster state: ",
    )
