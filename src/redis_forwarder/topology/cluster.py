"""Shards of a Redis Cluster, from ``CLUSTER SHARDS`` (Redis 7+) or ``CLUSTER SLOTS``.

A shard is a master with its replicas and slot ranges. Its id must survive a failover:

- Redis 7.2+ gives each shard an ``id`` in CLUSTER SHARDS: used as is.
- Otherwise the id is the smallest node id among the shard's healthy members, cut to
  12 hex digits; and :func:`carry_ids` keeps the previous id of any shard that shares a
  member with a shard of the previous view, so a watcher never renames a shard whose
  replica was promoted. See docs/topology.md for the limits of this.

A master with no slots is a shard only while it is healthy (a node just added, before
resharding); a failed master that lost its slots to a promoted replica is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis_forwarder.errors import (
    AuthenticationError,
    MasterUnconfirmedError,
    UnreachableError,
    WrongServerError,
)
from redis_forwarder.model import Address, DeploymentKind, RedisNode, Shard, Topology
from redis_forwarder.topology.connections import CommandRefused, Connections, NodeFailed
from redis_forwarder.topology.slots import ranges_of

ID_LENGTH = 12


async def discover_cluster(
    seeds: Iterable[Address], conns: Connections, previous: Topology | None = None
) -> Topology:
    """Ask the known masters first, then the seeds, until one node gives a view whose
    masters do not deny it.

    A node's view can lag a failover by a gossip round: right after CLUSTER FAILOVER a
    node may still list the old master. So, as with sentinels, each master of the view is
    asked ROLE; a view naming a node that says it is a replica is stale and the next node
    is asked. (A master that does not answer at all is kept: it may just have died, and
    the cluster has not failed it over yet.)
    """
    known = [s.master.address for s in previous.shards] if previous else []
    candidates = list(dict.fromkeys([*known, *seeds]))
    failures: dict[str, str] = {}
    auth_errors: list[AuthenticationError] = []
    partial: Topology | None = None
    for address in candidates:
        try:
            topology = await _ask(conns, address)
            denial = await _denied_master(conns, topology)
        except AuthenticationError as exc:
            auth_errors.append(exc)
            failures[str(address)] = "refused our credentials"
            continue
        except NodeFailed as exc:
            failures[str(address)] = exc.reason
            continue
        if denial:
            failures[str(address)] = f"stale view: {denial}"
            continue
        if _covered(topology) < _covered(previous) and partial is None:
            # A node that has just joined knows only part of the cluster for a gossip
            # round or two; its view would rename every shard it has not heard of yet.
            partial = topology
            failures[str(address)] = f"partial view: {_covered(topology)} slots"
            continue
        return carry_ids(previous, topology) if previous else topology
    if partial is not None:  # no node knew more: the cluster itself lost slots
        return carry_ids(previous, partial) if previous else partial
    if auth_errors and len(auth_errors) == len(candidates):
        raise auth_errors[0]
    if failures and all(r.startswith("stale view") for r in failures.values()):
        raise MasterUnconfirmedError(
            "every cluster node's view names a master that says it is a replica "
            f"({next(iter(failures.values()))}); a failover is under way: try again"
        )
    raise UnreachableError("cluster node", failures)


def _covered(topology: Topology | None) -> int:
    if topology is None:
        return 0
    return sum(end - start + 1 for shard in topology.shards for start, end in shard.slots)


async def _denied_master(conns: Connections, topology: Topology) -> str:
    """The first master of ``topology`` that says ROLE replica, described; or ""."""
    for shard in topology.shards:
        try:
            role = await conns.call(shard.master.address, "ROLE")
        except NodeFailed:
            continue
        if role and role[0] != "master":
            return f"{shard.master} says it is a {role[0]}"
    return ""


async def _ask(conns: Connections, address: Address) -> Topology:
    try:
        reply = await conns.call(address, "CLUSTER", "SHARDS")
        shards = _from_cluster_shards(reply, address)
    except CommandRefused as exc:
        reason = exc.reason.lower()
        if "cluster support disabled" in reason:
            raise WrongServerError(
                f"{address} is a standalone Redis server (cluster support disabled); "
                "use kind = standalone, or give the addresses of cluster nodes"
            ) from None
        if "unknown command" in reason and "'cluster'" in reason:
            raise WrongServerError(
                f"{address} does not know CLUSTER (is it a sentinel?); give cluster node "
                "addresses, or use kind = sentinel"
            ) from None
        if "unknown subcommand" not in reason:
            raise
        # Before Redis 7: CLUSTER SLOTS has the same facts, less the empty masters.
        shards = _from_cluster_slots(await conns.call(address, "CLUSTER", "SLOTS"), address)
    return Topology(DeploymentKind.CLUSTER, tuple(sorted(shards, key=lambda s: s.id)))


def _map(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return reply
    return {str(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def _node_address(node: dict[str, Any]) -> Address:
    host = node.get("endpoint") or node.get("ip")
    if not host or host == "?":
        host = node.get("ip", "")
    port = node.get("port") or node.get("tls-port")
    return Address(str(host), int(port or 0))


def _from_cluster_shards(reply: Any, asked: Address) -> list[Shard]:
    shards = []
    for entry in reply:
        fields = _map(entry)
        nodes = [_map(n) for n in fields.get("nodes", [])]
        masters = [n for n in nodes if n.get("role") == "master"]
        if not masters:
            continue
        master = masters[0]
        bounds = [int(b) for b in fields.get("slots", [])]
        slots = tuple(zip(bounds[::2], bounds[1::2], strict=True))
        if master.get("health") != "online" and not slots:
            continue  # a failed master whose slots a promoted replica took over
        replicas = [n for n in nodes if n.get("role") == "replica" and n.get("health") != "fail"]
        members = [master, *replicas]
        shard_id = str(fields.get("id") or min(str(n["id"]) for n in members)[:ID_LENGTH])
        shards.append(
            Shard(
                id=shard_id,
                master=RedisNode(_node_address(master), str(master["id"])),
                replicas=tuple(sorted(RedisNode(_node_address(n), str(n["id"])) for n in replicas)),
                slots=slots,
                learned=f"CLUSTER SHARDS from {asked}",
            )
        )
    return shards


def _from_cluster_slots(reply: Any, asked: Address) -> list[Shard]:
    by_master: dict[str, tuple[RedisNode, set[RedisNode], set[int]]] = {}
    for start, end, master, *replicas in reply:
        master_node = RedisNode(Address(str(master[0]), int(master[1])), str(master[2]))
        _, known_replicas, slots = by_master.setdefault(
            master_node.node_id, (master_node, set(), set())
        )
        slots.update(range(int(start), int(end) + 1))
        known_replicas.update(RedisNode(Address(str(r[0]), int(r[1])), str(r[2])) for r in replicas)
    shards = []
    for master_node, replicas, slots in by_master.values():
        members = [master_node.node_id, *(r.node_id for r in replicas)]
        shards.append(
            Shard(
                id=min(members)[:ID_LENGTH],
                master=master_node,
                replicas=tuple(sorted(replicas)),
                slots=ranges_of(slots),
                learned=f"CLUSTER SLOTS from {asked}",
            )
        )
    return shards


def carry_ids(previous: Topology, fresh: Topology) -> Topology:
    """Give each shard of ``fresh`` its id in ``previous``. Pure.

    Shards that serve slots are matched first, by the slots they share with a previous
    shard (slots move only by migration, a few at a time), then by shared members. A
    shard with no slots keeps the id of a previous shard it shares a member with, if
    that id is still free (a shard whose slots all migrated away); if the id is taken,
    it is a master in the middle of being demoted (it lost its slots to a promoted
    replica and has not yet turned into a replica) and is left out of this view: it
    reappears as a replica. Shards that match nothing keep their fresh id.
    """
    taken: set[str] = set()
    renamed: list[Shard] = []
    ordered = sorted(fresh.shards, key=lambda s: (not s.slots, s.id))
    for shard in ordered:
        members, slots = _members(shard), shard.slot_set()
        scores = [
            (len(slots & old.slot_set()), len(members & _members(old)), old.id)
            for old in previous.shards
            if old.id not in taken
        ]
        matches = [score for score in scores if score[0] or score[1]]
        if matches:
            shard_id = max(matches)[2]
        elif not shard.slots and any(members & _members(old) for old in previous.shards):
            continue  # a demoted master, between losing its slots and replicating
        else:
            shard_id = shard.id
        taken.add(shard_id)
        renamed.append(Shard(shard_id, shard.master, shard.replicas, shard.slots, shard.learned))
    return Topology(fresh.kind, tuple(sorted(renamed, key=lambda s: s.id)))


def _members(shard: Shard) -> set[str]:
    return {n.node_id for n in (shard.master, *shard.replicas) if n.node_id}


ShardNames = dict[str, dict[str, list[Any]]]  # id -> {"slots": [[a, b]], "members": [ids]}


def shard_names(topology: Topology) -> ShardNames:
    """What names which shard in this view, small enough for a znode: each shard's id
    with its slot ranges and member node ids (what :func:`carry_ids` matches on)."""
    return {
        shard.id: {
            "slots": [list(r) for r in shard.slots],
            "members": sorted(_members(shard)),
        }
        for shard in topology.shards
    }


def named_like(topology: Topology, names: ShardNames) -> Topology:
    """``topology`` with the shard ids another view (``names``) gives them, matched by
    slots and then members as :func:`carry_ids` does. Pure.

    On Redis 7.0 a shard id is derived and carried from view to view, so two processes
    that watched through different views (one asked a node that had just joined) can
    name a shard differently; the fleet follows the controller's names."""
    unknown = RedisNode(Address("0.0.0.0", 0))
    reference = Topology(
        DeploymentKind.CLUSTER,
        tuple(
            Shard(
                shard_id,
                RedisNode(unknown.address, str(members[0])) if members else unknown,
                tuple(RedisNode(unknown.address, str(m)) for m in members[1:]),
                tuple((int(a), int(b)) for a, b in entry.get("slots", [])),
                "the controller",
            )
            for shard_id, entry in sorted(names.items())
            for members in [list(entry.get("members", []))]
        ),
    )
    return carry_ids(reference, topology)
