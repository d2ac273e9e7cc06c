"""A chaos campaign's schedule: which fault, aimed at whom, when and for how long. Pure:
the same seed, length and kinds give the same schedule, so a campaign that found
something can be run again (``drill chaos --seed``), as Jepsen's nemesis can.

A fault kind (``FaultKind``) names the *role* it aims at (a task's owner or standby,
the controller, a shard's master, the ZooKeeper leader), resolved to a process only
when it strikes: the schedule is the same from one run to the next, the holders are
whoever holds the roles then. Faults start every ``GAP`` seconds (drawn) and hold for
a drawn time, so they overlap; but each takes a *resource* (the forwarder nodes, one
shard of the source, ZooKeeper, the sink) and a fault whose resource is still taken
waits for it. One fault at a time per resource keeps each guarantee testable: two
forwarder nodes down at once may take a task's owner and its standby together, and
then its pub/sub loss is no bug; two ZooKeeper faults at once are an outage, which is
a kind of its own, and takes the nodes too (every node's session goes in it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from redis_forwarder.model import DeploymentKind

GAP = (3.0, 8.0)  # seconds between the starts of two faults
FIRST_AT = 2.0  # seconds of steady load before the first fault
NODES = "nodes"
ZOOKEEPER = "zookeeper"
SINK = "sink"
SOURCE = "source"  # a cluster's source is one resource; Sentinel shards are one each

SENTINEL = frozenset({DeploymentKind.SENTINEL})
CLUSTER = frozenset({DeploymentKind.CLUSTER})
ANY = frozenset(DeploymentKind)


@dataclass(frozen=True)
class FaultKind:
    name: str
    resource: str  # NODES, ZOOKEEPER, SINK or SOURCE (per shard on Sentinel)
    aims: tuple[str, ...]  # the roles it may aim at, drawn from
    hold: tuple[float, float]  # seconds the fault lasts before it is healed, drawn
    # Seconds its resource stays taken after the heal: a restarted node rejoins and
    # its standbys listen again, a failed-over shard's new replica syncs.
    cooldown: float
    kinds: frozenset[DeploymentKind] = ANY
    needs_root: bool = False  # network namespaces
    long_hold: tuple[float, float] | None = None  # now and then (LONG_ODDS) this instead
    source: bool = False  # a fault of the source deployment: its pub/sub loss is Redis'
    also: tuple[str, ...] = ()  # further resources it takes


LONG_ODDS = 0.15
OWNER, STANDBY, CONTROLLER, ANY_NODE = "owner", "standby", "controller", "any node"
MASTER, REPLICA, LEADER, EVERY = "master", "replica", "leader", "every"
NODE_AIMS = (OWNER, STANDBY, CONTROLLER, ANY_NODE)

KINDS: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("node-kill", NODES, NODE_AIMS, (1.0, 10.0), 3.0),
        FaultKind("node-stop", NODES, (OWNER, STANDBY, ANY_NODE), (1.0, 5.0), 3.0),
        # Mostly short freezes, within the session (the node must not lose its tasks);
        # now and then one past it, which the others must notice and take over.
        FaultKind("node-pause", NODES, NODE_AIMS, (1.0, 12.0), 3.0, long_hold=(20.0, 30.0)),
        FaultKind("controller-kill", NODES, (CONTROLLER,), (1.0, 8.0), 3.0),
        FaultKind(
            "partition-zookeeper", NODES, (OWNER, STANDBY), (2.0, 12.0), 3.0, needs_root=True
        ),
        FaultKind("partition-redis", NODES, (OWNER, STANDBY), (2.0, 14.0), 3.0, needs_root=True),
        FaultKind("sentinel-failover", SOURCE, (MASTER,), (0.0, 0.0), 6.0, SENTINEL, source=True),
        FaultKind("cluster-failover", SOURCE, (REPLICA,), (0.0, 0.0), 6.0, CLUSTER, source=True),
        FaultKind("master-kill", SOURCE, (MASTER,), (2.0, 10.0), 6.0, source=True),
        FaultKind("master-pause", SOURCE, (MASTER,), (1.0, 6.0), 6.0, source=True),
        FaultKind("slot-migration", SOURCE, (MASTER,), (2.0, 6.0), 3.0, CLUSTER, source=True),
        FaultKind("zk-leader-kill", ZOOKEEPER, (LEADER,), (2.0, 8.0), 3.0),
        FaultKind("zk-leader-pause", ZOOKEEPER, (LEADER,), (1.0, 8.0), 3.0),
        # Every node loses its session in an outage: a node fault then too takes a
        # task's standby with its owner's session, a double fault (issue 17's note).
        FaultKind("zk-outage", ZOOKEEPER, (EVERY,), (2.0, 12.0), 5.0, also=(NODES,)),
        FaultKind("slow-sink", SINK, (EVERY,), (0.5, 3.0), 1.0),
    )
}


@dataclass(frozen=True)
class Planned:
    """One fault of the schedule: ``at`` seconds after the campaign's start."""

    at: float
    kind: str
    aim: str  # the role (OWNER, MASTER, ...)
    pick: int  # which task or shard, resolved modulo how many there are then
    hold: float

    def resource(self, shards: list[str]) -> str:
        kind = KINDS[self.kind]
        if kind.resource == SOURCE and shards:
            return f"{SOURCE}:{self.shard(shards)}"
        return kind.resource

    def resources(self, shards: list[str]) -> tuple[str, ...]:
        """Every resource it takes: its own and ``FaultKind.also``."""
        return (self.resource(shards), *KINDS[self.kind].also)

    def shard(self, shards: list[str]) -> str:
        return shards[self.pick % len(shards)] if shards else ""


def applicable(kind: DeploymentKind, root: bool) -> list[str]:
    """The fault kinds that fit a deployment (partitions only as root)."""
    return [k.name for k in KINDS.values() if kind in k.kinds and (root or not k.needs_root)]


def plan(
    seed: int, seconds: float, kinds: list[str], shards: list[str] | None = None
) -> list[Planned]:
    """Faults starting within ``seconds``, in start order. ``shards``: the Sentinel
    masters' names (each a resource of its own); none for a cluster (one resource)."""
    unknown = sorted(set(kinds) - KINDS.keys())
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(KINDS)}")
    draw = random.Random(seed)
    names = sorted(set(kinds))
    busy: dict[str, float] = {}  # resource -> when it is free again
    schedule: list[Planned] = []
    at = FIRST_AT
    while at < seconds:
        kind = KINDS[draw.choice(names)]
        low, high = kind.hold
        if kind.long_hold is not None and draw.random() < LONG_ODDS:
            low, high = kind.long_hold
        fault = Planned(
            at=at,
            kind=kind.name,
            aim=draw.choice(kind.aims),
            pick=draw.randrange(1 << 16),
            hold=round(draw.uniform(low, high), 2),
        )
        resources = fault.resources(shards or [])
        start = max(at, *(busy.get(r, 0.0) for r in resources))  # still taken: it waits
        if start < seconds:
            fault = Planned(round(start, 2), fault.kind, fault.aim, fault.pick, fault.hold)
            schedule.append(fault)
            busy.update(dict.fromkeys(resources, start + fault.hold + kind.cooldown))
        at += draw.uniform(*GAP)
    return sorted(schedule, key=lambda f: f.at)
