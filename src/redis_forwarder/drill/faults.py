"""A chaos campaign's faults made real: a planned fault (``nemesis.Planned``) resolved
to whoever holds its role now, struck, and its heal. Signals go to the pids the lab
recorded; Sentinel, cluster and ZooKeeper faults are their own commands. A process the
campaign kills or stops is announced first (``expect``), so that an exit the campaign
did not cause stands out (``exits.ExitWatch``)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis_forwarder.drill import nemesis
from redis_forwarder.drill.workload import DRILL_ROUTES, PUBSUB_ROUTE
from redis_forwarder.lab.probes import redis_call
from redis_forwarder.model import Address, DeploymentKind

if TYPE_CHECKING:
    from redis_forwarder.drill.target import LabTarget

Undo = Callable[[], None]


class Unresolved(Exception):
    """No process holds the fault's role now (no controller during an election, no
    standby named yet): the fault is skipped, and says why."""


@dataclass(frozen=True)
class Struck:
    victim: str  # the process (or what the command acted on)
    shard: str  # the source shard it hit ("" for none)
    heal: Undo


class Striker:
    """Resolves roles and strikes; ``expect(name)`` is told before a kill or stop."""

    def __init__(self, target: LabTarget, expect: Callable[[str], None]) -> None:
        self.target = target
        self.expect = expect

    def strike(self, fault: nemesis.Planned) -> Struck:
        act: Callable[[nemesis.Planned], Struck] = getattr(self, "_" + fault.kind.replace("-", "_"))
        return act(fault)

    # -- roles

    def _status(self) -> dict[str, Any]:
        try:
            return self.target.status()
        except Exception as exc:  # ZooKeeper down: no role can be read
            raise Unresolved(f"fleet status unreadable: {exc}") from exc

    def _node(self, fault: nemesis.Planned) -> str:
        if fault.aim == nemesis.ANY_NODE:
            nodes = sorted(
                r.name for r in self.target.lab.state().processes if r.kind == "forwarder"
            )
            return nodes[fault.pick % len(nodes)]
        status = self._status()
        if fault.aim == nemesis.CONTROLLER:
            if not status["controller"]:
                raise Unresolved("no controller now")
            return str(status["controller"])
        # A drill task's owner (either drill route) or a pub/sub drill task's standby.
        routes = DRILL_ROUTES if fault.aim == nemesis.OWNER else (PUBSUB_ROUTE,)
        tasks = sorted(
            (t for t in status["tasks"] if t["route"] in routes),
            key=lambda t: (t["route"], t["shard"]),
        )
        field = "owner" if fault.aim == nemesis.OWNER else "standby"
        holders = [str(t[field]) for t in tasks if t.get(field)]
        if not holders:
            raise Unresolved(f"no drill task has a{'n' if field == 'owner' else ''} {field} now")
        return holders[fault.pick % len(holders)]

    def _shard(self, fault: nemesis.Planned) -> str:
        if self.target.kind is DeploymentKind.CLUSTER:
            shards = sorted(s.id for s in self.target.topology().shards)
            return shards[fault.pick % len(shards)]
        return fault.shard(self.target.shards)

    def _zookeeper_leader(self) -> str:
        leaders = self.target.zookeeper_processes("leader")
        if len(leaders) != 1:
            raise Unresolved(f"ZooKeeper has {len(leaders)} leaders now")
        return leaders[0]

    # -- signals

    def _kill(self, name: str, shard: str = "") -> Struck:
        self.expect(name)
        self.target.signal(name, signal.SIGKILL)
        return Struck(name, shard, lambda: self.target.restart(name))

    def _terminate(self, name: str) -> Struck:
        self.expect(name)
        self.target.signal(name, signal.SIGTERM)
        return Struck(name, "", lambda: self.target.restart(name))

    def _freeze(self, names: list[str], shard: str = "") -> Struck:
        for name in names:
            self.target.signal(name, signal.SIGSTOP)

        def thaw() -> None:
            for name in names:
                self.target.signal(name, signal.SIGCONT)

        return Struck(",".join(names), shard, thaw)

    # -- the kinds (nemesis.KINDS), one method each

    def _node_kill(self, fault: nemesis.Planned) -> Struck:
        return self._kill(self._node(fault))

    def _controller_kill(self, fault: nemesis.Planned) -> Struck:
        return self._kill(self._node(fault))

    def _node_stop(self, fault: nemesis.Planned) -> Struck:
        return self._terminate(self._node(fault))

    def _node_pause(self, fault: nemesis.Planned) -> Struck:
        return self._freeze([self._node(fault)])

    def _partition(self, fault: nemesis.Planned, link: str) -> Struck:
        victim = self._node(fault)
        return Struck(victim, "", self.target.cut(victim, link))

    def _partition_zookeeper(self, fault: nemesis.Planned) -> Struck:
        return self._partition(fault, "zookeeper")

    def _partition_redis(self, fault: nemesis.Planned) -> Struck:
        return self._partition(fault, "redis")

    def _sentinel_failover(self, fault: nemesis.Planned) -> Struck:
        shard = self._shard(fault)
        redis_call(self.target.sentinel(), "SENTINEL", "FAILOVER", shard, timeout=2)
        return Struck(f"sentinel ({shard})", shard, lambda: None)

    def _cluster_failover(self, fault: nemesis.Planned) -> Struck:
        shard = self._shard(fault)
        replica = self.target.replica(shard)
        redis_call(replica, "CLUSTER", "FAILOVER", timeout=2)
        return Struck(self.target.process_at(replica), shard, lambda: None)

    def _master_kill(self, fault: nemesis.Planned) -> Struck:
        shard = self._shard(fault)
        return self._kill(self.target.master_process(shard), shard)

    def _master_pause(self, fault: nemesis.Planned) -> Struck:
        shard = self._shard(fault)
        return self._freeze([self.target.master_process(shard)], shard)

    def _slot_migration(self, fault: nemesis.Planned) -> Struck:
        shard = self.target.drill_shard
        return Struck("drill stream's slot", shard, self.target.reshape().migrate_drill_stream())

    def _zk_leader_kill(self, fault: nemesis.Planned) -> Struck:
        return self._kill(self._zookeeper_leader())

    def _zk_leader_pause(self, fault: nemesis.Planned) -> Struck:
        return self._freeze([self._zookeeper_leader()])

    def _zk_outage(self, fault: nemesis.Planned) -> Struck:
        return self._freeze(self.target.zookeeper_processes())

    def _slow_sink(self, fault: nemesis.Planned) -> Struck:
        sink = self.target.drill_sink()
        pause_ms = max(1, int(fault.hold * 1000))
        redis_call(sink, "CLIENT", "PAUSE", pause_ms, "WRITE", timeout=2)
        # A sink that is a source master (the ``ha`` lab writes into the source): its
        # pause holds the sentinels' hello PUBLISH, their PING behind it goes
        # unanswered past down-after, and they fail the master over (a campaign: 116
        # messages lost in a failover nobody ordered). A source fault then, named so.
        return Struck(str(sink), self._shard_mastered_at(sink), lambda: None)

    def _shard_mastered_at(self, address: Address) -> str:
        if self.target.kind is DeploymentKind.CLUSTER:
            return ""  # the cluster lab's sink is a server of its own
        for shard in self.target.shards:
            try:
                if self.target.master(shard) == address:
                    return shard
            except RuntimeError:  # no sentinel answers: not known as a master
                continue
        return ""
