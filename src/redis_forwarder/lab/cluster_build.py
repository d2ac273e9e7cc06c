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

from redis_forwarder.errors import LabError
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
    for shard in spec.shards:
        master_id = str(probes.redis_call(shard.master, "CLUSTER", "MYID"))
        for replica in shard.replicas:
            probes.redis_call(replica, "CLUSTER", "REPLICATE", master_id)
            replica_checks.append(replica_linked(replica, shard.master))
    wait_for(
        replica_checks + _formed_checks(spec),
        deadline.remaining,
        progress=progress,
        watchdog=watchdog,
        stage="cluster state: ",
    )


def _formed_checks(spec: TopologySpec) -> list[Check]:
    """Every node sees the whole cluster ok, with each replica under its spec master."""
    nodes = spec.redis_addresses()
    roles: dict[Address, Address | None] = {}
    for shard in spec.shards:
        roles[shard.master] = None
        roles.update({replica: shard.master for replica in shard.replicas})
    ranges = spec.slot_ranges().values()
    covered = sum(end - start + 1 for pairs in ranges for start, end in pairs)
    return [cluster_healthy(node, len(nodes), covered) for node in nodes] + [
        cluster_agrees(node, roles) for node in nodes
    ]


def already_formed(spec: TopologySpec) -> bool:
    """True when the spec's nodes already are the spec's cluster (form-cluster run a
    second time: nothing to do); False when every node is fresh (knows only itself).

    Raises LabError for anything between: a node in some cluster that is not the
    spec's cannot be formed again (CLUSTER SET-CONFIG-EPOCH and ADDSLOTSRANGE refuse).
    """
    reasons = [(check, check.run()) for check in _formed_checks(spec)]
    if all(reason is None for _, reason in reasons):
        return True
    for node in spec.redis_addresses():
        known = int(probes.cluster_info(node).get("cluster_known_nodes", 1))
        if known > 1:
            why = next(f"{c.description}: {r}" for c, r in reasons if r is not None)
            raise LabError(
                f"{node} already belongs to a cluster (it knows {known} nodes), but not "
                f"the one the spec describes ({why}); form-cluster needs fresh nodes: "
                "start them on empty data directories (or CLUSTER RESET HARD each)"
            )
    return False
