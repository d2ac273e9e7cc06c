"""The faults a drill can inject into a lab, each a real one: signals to the pids the
lab recorded, Sentinel and ZooKeeper commands. ``inject`` makes the fault and returns
how to undo it (restart what was killed, wake what was stopped); ``hold`` is how long
the drill watches after the fault before undoing it; ``max_gap`` bounds the pub/sub
route's gap (the guarantee; stream routes may lose nothing in any scenario); ``kinds``
says which deployments a scenario applies to (``all`` runs those of the lab's kind).

The "drill task" that node and master faults aim at is the pub/sub drill route's task
on ``target.drill_shard``: the first Sentinel master, or on a cluster the shard classic
pub/sub is served from."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis_forwarder.lab.probes import redis_call
from redis_forwarder.model import Address, DeploymentKind

SENTINEL = frozenset({DeploymentKind.SENTINEL})
CLUSTER = frozenset({DeploymentKind.CLUSTER})
ANY = frozenset(DeploymentKind)


class Target(Protocol):
    """What scenarios act on (the runner's view of the lab and the fleet)."""

    session_timeout: float
    cut_off_after: float  # a node silent from Redis this long may be cut off

    def has_standby(self, route: str) -> bool: ...

    @property
    def drill_shard(self) -> str: ...

    def owner(self, shard: str) -> str | None: ...

    def controller(self) -> str | None: ...

    def signal(self, process: str, sig: signal.Signals) -> None: ...

    def restart(self, process: str) -> None: ...

    def master_process(self, shard: str) -> str: ...

    def zookeeper_processes(self, role: str | None = None) -> list[str]: ...

    def sentinel(self) -> Address: ...

    def master(self, shard: str) -> Address: ...

    def replica(self, shard: str) -> Address: ...

    def drill_sink(self) -> Address: ...

    def reshape(self) -> Reshaper: ...

    def isolate_nodes(self) -> Undo: ...

    def cut_owner(self, link: str) -> Undo: ...

    def note(self, event: str) -> None: ...


class Reshaper(Protocol):
    """Changes to a cluster's shape (runner.ClusterReshaper)."""

    def migrate_drill_stream(self) -> Undo: ...

    def add_shard(self) -> Undo: ...


Undo = Callable[[], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    inject: Callable[[Target], Undo]
    hold: Callable[[Target], float]
    max_gap: Callable[[Target], float]
    kinds: frozenset[DeploymentKind] = ANY
    needs_root: bool = False  # network namespaces: `drill all` leaves it out otherwise
    # Before the load starts, and undone after the drill: a set-up that is not the fault.
    prepare: Callable[[Target], Undo] | None = None
    # A fault that a pub/sub route's hot standby covers (one of the owner node itself,
    # issue 15; a ZooKeeper outage, issue 17): such a route may lose nothing here
    # (only duplicate, counted).
    standby_covers: bool = False


def _owner(target: Target) -> str:
    owner = target.owner(target.drill_shard)
    if owner is None:
        raise RuntimeError("the drill task has no owner to fault")
    return owner


def _kill_node(target: Target) -> Undo:
    victim = _owner(target)
    target.signal(victim, signal.SIGKILL)
    target.note(f"kill -9 {victim} (owner of the drill task)")
    return lambda: target.restart(victim)


def _stop_node(target: Target) -> Undo:
    victim = _owner(target)
    target.signal(victim, signal.SIGTERM)
    target.note(f"SIGTERM {victim} (owner of the drill task)")
    return lambda: target.restart(victim)


def _pause_node(target: Target) -> Undo:
    victim = _owner(target)
    target.signal(victim, signal.SIGSTOP)
    target.note(f"SIGSTOP {victim} (owner of the drill task)")

    def wake() -> None:
        target.signal(victim, signal.SIGCONT)
        target.note(f"SIGCONT {victim}")

    return wake


def _kill_controller(target: Target) -> Undo:
    victim = target.controller()
    if victim is None:
        raise RuntimeError("no controller to kill")
    target.signal(victim, signal.SIGKILL)
    target.note(f"kill -9 {victim} (the controller)")
    return lambda: target.restart(victim)


def _sentinel_failover(target: Target) -> Undo:
    shard = target.drill_shard
    redis_call(target.sentinel(), "SENTINEL", "FAILOVER", shard, timeout=2)
    target.note(f"SENTINEL FAILOVER {shard}")
    return lambda: None


def _cluster_failover(target: Target) -> Undo:
    shard = target.drill_shard
    replica = target.replica(shard)
    redis_call(replica, "CLUSTER", "FAILOVER", timeout=2)
    target.note(f"CLUSTER FAILOVER on {replica} (replica in shard {shard})")
    return lambda: None


def _kill_master(target: Target) -> Undo:
    shard = target.drill_shard
    victim = target.master_process(shard)
    target.signal(victim, signal.SIGKILL)
    target.note(f"kill -9 {victim} (master of {shard})")
    return lambda: target.restart(victim)


def _half_open(target: Target) -> Undo:
    shard = target.drill_shard
    victim = target.master_process(shard)
    target.signal(victim, signal.SIGSTOP)
    target.note(f"SIGSTOP {victim} (master of {shard}): a half-open source")

    def wake() -> None:
        target.signal(victim, signal.SIGCONT)
        target.note(f"SIGCONT {victim}")

    return wake


def _zk_leader_loss(target: Target) -> Undo:
    (leader,) = target.zookeeper_processes("leader")
    target.signal(leader, signal.SIGKILL)
    target.note(f"kill -9 {leader} (ZooKeeper leader)")
    return lambda: target.restart(leader)


def _zk_outage(target: Target) -> Undo:
    members = target.zookeeper_processes()
    for member in members:
        target.signal(member, signal.SIGSTOP)
    target.note(f"SIGSTOP every ZooKeeper node ({', '.join(members)})")

    def wake() -> None:
        for member in members:
            target.signal(member, signal.SIGCONT)
        target.note("SIGCONT every ZooKeeper node")

    return wake


def _slow_sink(target: Target) -> Undo:
    sink = target.drill_sink()
    redis_call(sink, "CLIENT", "PAUSE", 2000, "WRITE", timeout=2)
    target.note(f"CLIENT PAUSE 2000 WRITE on {sink} (the drill task's sink)")
    return lambda: None


def _isolate(target: Target) -> Undo:
    return target.isolate_nodes()


def _partition_zookeeper(target: Target) -> Undo:
    return target.cut_owner("zookeeper")


def _partition_redis(target: Target) -> Undo:
    return target.cut_owner("redis")


def _migrate_slots(target: Target) -> Undo:
    return target.reshape().migrate_drill_stream()


def _add_shard(target: Target) -> Undo:
    return target.reshape().add_shard()


def _session(target: Target) -> float:
    return target.session_timeout


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "kill-node",
            "kill -9 of the node that owns the drill task: the others take it over after "
            "its ZooKeeper session expires",
            _kill_node,
            hold=lambda t: _session(t) + 4,
            max_gap=lambda t: _session(t) + 3,
            standby_covers=True,
        ),
        Scenario(
            "stop-node",
            "SIGTERM of the owner: it hands its tasks off before it exits",
            _stop_node,
            hold=lambda t: 3,
            max_gap=lambda t: 2,
            standby_covers=True,
        ),
        Scenario(
            "pause-node",
            "SIGSTOP of the owner past its session timeout, then SIGCONT: the others take "
            "over; the frozen node writes nothing when it wakes",
            _pause_node,
            hold=lambda t: _session(t) + 4,
            max_gap=lambda t: _session(t) + 3,
            standby_covers=True,
        ),
        Scenario(
            "kill-controller",
            "kill -9 of the controller: a new one is elected, the assignment does not churn",
            _kill_controller,
            hold=lambda t: _session(t) + 4,
            max_gap=lambda t: _session(t) + 3,
            standby_covers=True,
        ),
        Scenario(
            "sentinel-failover",
            "SENTINEL FAILOVER of the drill task's master: the task follows the promoted one",
            _sentinel_failover,
            hold=lambda t: 5,
            max_gap=lambda t: 3,
            kinds=SENTINEL,
        ),
        Scenario(
            "cluster-failover",
            "CLUSTER FAILOVER on a replica of the drill task's shard: the task follows the "
            "promoted replica",
            _cluster_failover,
            hold=lambda t: 5,
            max_gap=lambda t: 3,
            kinds=CLUSTER,
        ),
        Scenario(
            "kill-master",
            "kill -9 of the drill task's Redis master: the sentinels (or the cluster) "
            "promote its replica",
            _kill_master,
            hold=lambda t: 8,
            max_gap=lambda t: 6,
        ),
        Scenario(
            "half-open",
            "SIGSTOP of the drill task's Redis master for 4 s: the heartbeat notices, the "
            "sentinels (or the cluster) fail it over",
            _half_open,
            hold=lambda t: 4,
            max_gap=lambda t: 7,
        ),
        Scenario(
            "zk-leader-loss",
            "kill -9 of the ZooKeeper leader: sessions survive the election, no task moves",
            _zk_leader_loss,
            hold=lambda t: 6,
            max_gap=lambda t: 2,
        ),
        Scenario(
            "zk-outage",
            "every ZooKeeper node stopped for two session timeouts: nodes stop writing "
            "and keep listening, then the standbys (or owners whose session survived) take "
            "the pub/sub tasks with what they heard meanwhile",
            _zk_outage,
            hold=lambda t: 2 * _session(t),
            max_gap=lambda t: 3 * _session(t) + 8,
            standby_covers=True,
        ),
        Scenario(
            "slow-sink",
            "the sink stops answering writes for 2 s (CLIENT PAUSE WRITE): the backlog waits, "
            "nothing is lost",
            _slow_sink,
            hold=lambda t: 3,
            max_gap=lambda t: 4,
        ),
        Scenario(
            "partition-zookeeper",
            "every node in a network namespace of its own; the drill task's owner loses its "
            "link to ZooKeeper (it still reaches Redis): it stops writing when its lease "
            "runs out, the others take its tasks after its session expires",
            _partition_zookeeper,
            hold=lambda t: _session(t) + 4,
            max_gap=lambda t: _session(t) + 3,
            needs_root=True,
            prepare=_isolate,
            standby_covers=True,
        ),
        Scenario(
            "partition-redis",
            "the node owning the drill task loses its link to Redis (it still reaches "
            "ZooKeeper): once it has heard nothing from Redis for a session timeout and "
            "two topology refreshes while the others do, the controller gives its tasks "
            "to them",
            _partition_redis,
            hold=lambda t: t.cut_off_after + 5,
            # Silent that long, then up to a cycle until the node reports it and one
            # until the controller reads it, then the hand-over.
            max_gap=lambda t: t.cut_off_after + 3,
            needs_root=True,
            prepare=_isolate,
            standby_covers=True,
        ),
        Scenario(
            "migrate-slots",
            "the slot of a drill stream served by the drill shard migrates to another master "
            "under load, and back: the stream moves between tasks, copied exactly once",
            _migrate_slots,
            hold=lambda t: 4,
            max_gap=lambda t: 3,
            kinds=CLUSTER,
        ),
        Scenario(
            "add-shard",
            "a new master joins the cluster and takes a drill stream's slot (then gives it "
            "back and leaves): a task starts for the new shard",
            _add_shard,
            hold=lambda t: 5,
            max_gap=lambda t: 3,
            kinds=CLUSTER,
        ),
    )
}
