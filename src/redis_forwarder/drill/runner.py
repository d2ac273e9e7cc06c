"""Running one drill on a lab that is up: restore a known state, load, inject, watch,
undo, read back, check. Every wait is bounded and says what it waited for.

The lab must run forwarder nodes with the drill routes (docs/drills.md): the runner
reads the first forwarder node's config that the lab wrote for the deployment, the
routes and the fleet's ZooKeeper.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from redis_forwarder.config import ForwarderConfig, load_config
from redis_forwarder.coordination.fleet import fleet_status
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.zk import FleetClient
from redis_forwarder.drill import sinks
from redis_forwarder.drill.checker import RouteReport, check, guarantees_broken, rates
from redis_forwarder.drill.load import RELOCATE_EVERY, Load
from redis_forwarder.drill.partition import Partition
from redis_forwarder.drill.reshape import ClusterReshaper
from redis_forwarder.drill.scenarios import Scenario
from redis_forwarder.drill.workload import DRILL_ROUTES, PUBSUB_ROUTE, Lane, drill_routes, workload
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab, probes
from redis_forwarder.lab.forwarders import CONFIG_FILE
from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.lab.reshard import slot_owners
from redis_forwarder.lab.spec import TopologySpec, load_spec
from redis_forwarder.model import Address, DeploymentKind, Topology
from redis_forwarder.retry import Deadline
from redis_forwarder.topology import discover
from redis_forwarder.topology.slots import key_slot
from redis_forwarder.work import wanted_tasks

log = logging.getLogger(__name__)
STEADY = 3.0  # seconds of steady traffic before the fault and after recovery
SETTLE_TIMEOUT = 60.0


@dataclass
class DrillResult:
    scenario: str
    description: str
    fault_at: float
    events: list[tuple[float, str]]
    routes: dict[str, RouteReport]
    replication_loss: int
    broken: list[str]
    timeline: dict[str, dict[int, int]] = field(default_factory=dict)
    started_at: float = 0.0
    timeline_route: str = ""  # the checker route the timeline shows

    @property
    def passed(self) -> bool:
        return not self.broken

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "passed": self.passed,
            "broken": self.broken,
            "fault_at": self.fault_at,
            "events": [
                {"at": at, "offset": round(at - self.fault_at, 3), "what": what}
                for at, what in self.events
            ],
            "replication_loss": self.replication_loss,
            "routes": {name: report.to_json() for name, report in self.routes.items()},
        }


class LabTarget:
    """The lab and its fleet, as scenarios act on them."""

    def __init__(self, lab: Lab, progress: Callable[[str], None]) -> None:
        self.lab = lab
        self.progress = progress
        state = lab.state()
        forwarders = [p for p in state.processes if p.kind == "forwarder"]
        if not forwarders:
            raise UsageError(
                f"the lab in {lab.directory} runs no forwarder nodes; drills need a spec "
                "with [forwarders] and the drill routes (topology/ha.toml, ha-cluster.toml)"
            )
        self.config: ForwarderConfig = load_config(Path(forwarders[0].data_dir) / CONFIG_FILE)
        drill_routes(self.config)  # a clear error when they are missing or unusable
        assert self.config.coordination is not None
        self.coordination = self.config.coordination
        self.session_timeout = self.coordination.session_timeout
        self.cut_off_after = self.config.cut_off_after
        self.paths = Paths(self.coordination.root)
        self.kind = self.config.source.kind
        self.shards = list(self.config.source.masters) or ["main"]
        self.workload = workload(self.config, self.shards)
        self.events: list[tuple[float, str]] = []
        self._slots = SlotMap(self.cluster_nodes)
        self._partitions: dict[str, Partition] = {}  # node -> its namespace, while isolated

    # -- what scenarios use
    def note(self, event: str) -> None:
        self.events.append((time.time(), event))
        self.progress(event)

    def status(self) -> dict[str, Any]:
        with FleetClient(
            self.coordination.zookeeper,
            timeout=self.session_timeout,
            credentials=self.coordination.credentials(),
        ) as client:
            return fleet_status(client, self.paths, self.cut_off_after)

    def owners(self) -> dict[tuple[str, str], tuple[str | None, int | None]]:
        return {
            (t["route"], t["shard"]): (t["owner"] if t["running"] else None, t["epoch"])
            for t in self.status()["tasks"]
        }

    @property
    def drill_shard(self) -> str:
        """The shard of the pub/sub drill task, which node faults aim at: the first
        Sentinel master, or on a cluster the shard classic pub/sub is served from."""
        if self.kind is not DeploymentKind.CLUSTER:
            return self.shards[0]
        tasks = wanted_tasks(self.config.routes, self.topology())
        (shard,) = [s for route, s in tasks if route == PUBSUB_ROUTE]
        return shard

    def owner(self, shard: str) -> str | None:
        return self.owners().get((PUBSUB_ROUTE, shard), (None, None))[0]

    def controller(self) -> str | None:
        holder = self.status()["controller"]
        return str(holder) if holder else None

    def signal(self, process: str, sig: signal.Signals) -> None:
        self.lab.send_signal(process, sig)

    def restart(self, process: str) -> None:
        self.lab.restart(process)
        self.note(f"restarted {process}")

    def topology(self) -> Topology:
        """The source deployment as the forwarders see it (shard ids included)."""
        settings = self.config.source.settings()
        if self.kind is DeploymentKind.CLUSTER:  # every node the lab runs is a seed
            settings = replace(settings, addresses=tuple(self.cluster_nodes()))
        return discover(settings)

    def isolate_nodes(self) -> Callable[[], None]:
        """Restart every forwarder node in a network namespace of its own (before the
        load starts: the restarts are not the drill's fault), each reaching the lab
        through its own links (``partition.py``). Returns the cleanup: every node
        restarted outside again, the namespaces deleted."""
        records = self.lab.state().processes
        addresses = {
            "redis": [Address.parse(r.address) for r in records if r.kind in ("redis", "sentinel")],
            "zookeeper": [Address.parse(r.address) for r in records if r.kind == "zookeeper"],
        }
        nodes = [r.name for r in records if r.kind == "forwarder"]
        base = os.getpid() % 80 * 3
        opened: dict[str, Partition] = {}

        def cleanup() -> None:
            failures: list[str] = []
            for name, partition in opened.items():
                try:
                    self.lab.restart(name)  # back into the lab's namespace
                except Exception as exc:  # the namespaces go all the same
                    failures.append(f"{name}: {exc}")
                finally:
                    partition.close()
            opened.clear()
            if failures:
                raise RuntimeError(f"restarting nodes outside their namespaces: {failures}")

        try:
            for index, name in enumerate(nodes):
                partition = Partition(addresses, tag=base + index)
                opened[name] = partition
                partition.open()
                self.lab.restart(name, wrap=partition.wrap)
                self.progress(f"{name} restarted in network namespace {partition.namespace}")
        except BaseException:
            cleanup()
            raise
        self._partitions = opened
        return cleanup

    def cut_owner(self, link: str) -> Callable[[], None]:
        """Take down the link to Redis or to ZooKeeper of the node that owns the drill
        task (isolated by ``isolate_nodes``). Returns the undo: the link up again."""
        victim = self.owner(self.drill_shard)
        partition = self._partitions.get(victim or "")
        if victim is None or partition is None:
            raise RuntimeError("the drill task's owner is not in a namespace of its own")
        partition.cut(link)
        self.note(f"{victim} cut off from {link} (veth down in {partition.namespace})")

        def undo() -> None:
            partition.heal(link)
            self.note(f"{victim}: {link} link up")

        return undo

    def reshape(self) -> ClusterReshaper:
        return ClusterReshaper(self)

    def cluster_nodes(self) -> list[Address]:
        """Every Redis node of the source deployment the lab runs now (sinks apart)."""
        return [
            Address.parse(r.address)
            for r in self.lab.state().processes
            if r.kind == "redis" and r.role != "sink"
        ]

    def master(self, shard: str) -> Address:
        """Where the shard's master is now: as the first sentinel that answers says, or
        as a fresh discovery of the cluster says."""
        if self.kind is DeploymentKind.CLUSTER:
            found = self.topology().shard(shard)
            if found is None:
                raise RuntimeError(f"the cluster has no shard {shard} now")
            return found.master.address
        seeds = [Address.parse(a) for a in self.config.source.addresses]
        if self.kind is DeploymentKind.STANDALONE:
            return seeds[0]
        for sentinel in seeds:
            try:
                host, port = redis_call(
                    sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", shard, timeout=0.5
                )
                return Address(str(host), int(port))
            except (ProbeFailed, TypeError, ValueError):
                continue
        raise RuntimeError(f"no sentinel names the master of {shard}")

    def replica(self, shard: str) -> Address:
        found = self.topology().shard(shard)
        if found is None or not found.replicas:
            raise RuntimeError(f"shard {shard} has no replica to promote")
        return found.replicas[0].address

    def masters(self) -> list[Address]:
        return [s.master.address for s in self.topology().shards]

    def locate(self, where: str) -> Address:
        """Where the load sends a lane's messages: a shard's master, or on a cluster the
        owner of the key's slot (from a map refreshed at most every RELOCATE_EVERY)."""
        if self.kind is DeploymentKind.CLUSTER:
            return self._slots.owner(key_slot(where))
        return self.master(where)

    def process_at(self, address: Address) -> str:
        for record in self.lab.state().processes:
            if record.address == str(address) and record.kind == "redis":
                return record.name
        raise RuntimeError(f"no lab process at {address}")

    def master_process(self, shard: str) -> str:
        return self.process_at(self.master(shard))

    def zookeeper_processes(self, role: str | None = None) -> list[str]:
        return [
            s.record.name
            for s in self.lab.status()
            if s.record.kind == "zookeeper" and (role is None or s.role == role)
        ]

    def sentinel(self) -> Address:
        return Address.parse(self.config.source.addresses[0])

    def sink_address(self, lane: Lane) -> Address:
        """The server holding a lane's sink stream."""
        if lane.sink != "source":
            return Address.parse(self.config.targets[lane.sink].addresses[0])
        if self.kind is DeploymentKind.CLUSTER:
            return self._slots.owner(key_slot(lane.sink_key), fresh=True)
        return self.master(lane.where)

    def source_address(self, lane: Lane) -> Address:
        if self.kind is DeploymentKind.CLUSTER:
            return self._slots.owner(key_slot(lane.key), fresh=True)
        return self.master(lane.where)

    def drill_sink(self) -> Address:
        """Where the pub/sub drill task on the drill shard writes (the slow-sink fault)."""
        lanes = self.workload.by_route[self.workload.faulted_route]
        return self.sink_address(lanes[0])

    def lab_spec(self) -> TopologySpec:
        return load_spec(self.lab.state().spec_path)

    # -- known state
    def settle(self, what: str) -> None:
        """Until the deployment is whole: every lab process runs, every forwarder node is
        a member, and every task runs on the node the assignment names (so a restored
        node has taken its share back before the drill calls it recovered)."""
        deadline = Deadline(SETTLE_TIMEOUT)
        reason = ""
        while not deadline.expired:
            reason = self._unsettled()
            if not reason:
                return
            time.sleep(0.2)  # polling, with the deadline above
        raise RuntimeError(f"the lab did not settle {what} within {SETTLE_TIMEOUT:.0f}s: {reason}")

    def _unsettled(self) -> str:
        statuses = self.lab.status(probe=False)
        dead = [s.record.name for s in statuses if not s.running]
        if dead:
            return f"not running: {', '.join(dead)}"
        try:  # one view of the deployment for this whole check
            topology = self.topology()
        except Exception as exc:  # topology in the middle of a change
            return f"topology: {exc}"
        try:
            lagging = self._replication_lagging(statuses, topology)
        except (ProbeFailed, RuntimeError) as exc:
            return f"replication: {exc}"
        if lagging:
            # A failover onto a replica that is not in sync loses data: that would be
            # the next drill's loss, not this one's.
            return f"not in sync: {', '.join(lagging)}"
        try:
            status = self.status()
        except Exception as exc:  # ZooKeeper coming back
            return f"fleet status: {exc}"
        nodes = {s.record.name for s in statuses if s.record.kind == "forwarder"}
        missing = nodes - {str(m["id"]) for m in status["members"]}
        if missing:
            return f"not members yet: {', '.join(sorted(missing))}"
        tasks = {(t["route"], t["shard"]): t for t in status["tasks"]}
        wanted = sorted(wanted_tasks(self.config.routes, topology))
        moving = [
            f"{r}@{s}" for r, s in wanted
            if (t := tasks.get((r, s))) is None or not t["running"] or t["owner"] != t["assigned"]
        ]  # fmt: skip
        unsettled = [t for t in status["tasks"] if t["owner"] != t["assigned"]]
        if moving or unsettled:
            return f"tasks moving: {', '.join(moving) or len(unsettled)}"
        return ""

    def _replication_lagging(self, statuses: list[Any], topology: Topology) -> list[str]:
        """Redis nodes of the source that are not where a failover could safely go:
        a node that is not a master of ``topology`` and not a replica linked to one and
        done syncing (a restarted old master before it turns into a replica is one);
        on a cluster, also a node that does not say cluster_state:ok."""
        masters = {str(shard.master.address) for shard in topology.shards}
        lagging: list[str] = []
        for status in statuses:
            record = status.record
            if record.kind != "redis" or record.role == "sink":
                continue
            address = Address.parse(record.address)
            cluster = self.kind is DeploymentKind.CLUSTER  # (ProbeFailed when it is down)
            if cluster and probes.cluster_info(address).get("cluster_state") != "ok":
                lagging.append(f"{record.name} (cluster_state)")
                continue
            if record.address in masters:
                continue
            replication = probes.info(address, "replication")
            upstream = f"{replication.get('master_host')}:{replication.get('master_port')}"
            linked = (
                replication.get("role") == "slave"
                and upstream in masters
                and replication.get("master_link_status") == "up"
                and not int(replication.get("master_sync_in_progress", 0))
            )
            if not linked:
                lagging.append(record.name)
        return lagging


class OwnershipWatcher:
    """Polls the drill tasks' owners and epochs; each change is an event."""

    def __init__(self, target: LabTarget) -> None:
        self.target = target
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OwnershipWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        self._thread.join(10)

    def _run(self) -> None:
        last: dict[tuple[str, str], tuple[str | None, int | None]] = {}
        controller: str | None = None
        while not self._halt.wait(0.2):
            try:
                status = self.target.status()
            except Exception:
                continue  # ZooKeeper down: nothing to see
            if status["controller"] != controller and controller is not None:
                self.target.note(f"controller is now {status['controller']}")
            controller = status["controller"]
            for task in status["tasks"]:
                key = (task["route"], task["shard"])
                now = (task["owner"] if task["running"] else None, task["epoch"])
                if key in last and last[key] != now and task["route"] in DRILL_ROUTES:
                    self.target.note(f"{key[0]}@{key[1]}: owner {now[0]} epoch {now[1]}")
                last[key] = now


def run_drill(
    lab: Lab,
    scenario: Scenario,
    rate: float,
    progress: Callable[[str], None],
    steady: float = STEADY,
) -> DrillResult:
    target = LabTarget(lab, progress)
    if target.kind not in scenario.kinds:
        kinds = " or ".join(str(k) for k in sorted(scenario.kinds))
        raise UsageError(
            f"{scenario.name} drills a {kinds} deployment; the lab in {lab.directory} is "
            f"{target.kind} (see docs/drills.md for which spec each scenario needs)"
        )
    cleanup = scenario.prepare(target) if scenario.prepare is not None else None
    try:
        return _run(target, scenario, rate, progress, steady)
    finally:
        if cleanup is not None:
            cleanup()


def _run(
    target: LabTarget,
    scenario: Scenario,
    rate: float,
    progress: Callable[[str], None],
    steady: float,
) -> DrillResult:
    target.settle("before the drill")
    run = uuid.uuid4().hex[:8]
    lanes = target.workload.lanes
    load = Load(run, lanes, target.locate, rate)
    started = time.time()
    progress(f"{scenario.name}: load at {rate:.0f} msg/s, run {run}")
    load.start()
    try:
        time.sleep(steady)  # steady traffic before the fault: a fixed span, not a wait
        fault_at = time.time()
        with OwnershipWatcher(target):
            undo = scenario.inject(target)
            time.sleep(scenario.hold(target))  # the fault lasts this long
            undo()
            target.settle("after the fault")
            recovered_at = time.time()
            target.note("whole again")
            time.sleep(steady)  # traffic after recovery: no loss allowed in it
    finally:
        load.stop()
    time.sleep(1.0)  # the last messages on their way to the sinks
    clients: dict[Address, redis.Redis] = {}

    def client_at(address: Address) -> redis.Redis:
        if address not in clients:
            clients[address] = redis.Redis(host=address.host, port=address.port, socket_timeout=10)
        return clients[address]

    received = sinks.received(run, lanes, lambda lane: client_at(target.sink_address(lane)))
    kept = sinks.kept_by_source(run, lanes, lambda lane: client_at(target.source_address(lane)))
    for client in clients.values():
        client.close()
    sent, replication_loss = sinks.split_replication_loss(load.sent, kept)
    reports = check(sent, received, fault_at, recovered_at)
    broken: list[str] = []
    for name, report in reports.items():
        pubsub = name.startswith("pubsub@")
        bound = scenario.max_gap(target) if pubsub else None
        # Streams: an entry claimed late from a frozen owner lands after newer ones.
        # Pub/sub on a cluster: Redis orders PUBLISH per node only; a publisher that
        # follows a failover to another node can be overtaken on the cluster bus by its
        # own earlier messages. Both are counted and shown, not a broken guarantee.
        may_reorder = not pubsub or target.kind is DeploymentKind.CLUSTER
        problems = guarantees_broken(
            report, may_lose=pubsub, max_gap=bound, may_reorder=may_reorder
        )
        broken += [f"{name}: {problem}" for problem in problems]
    faulted = target.workload.faulted_route
    timeline = {
        "sent": rates((s.at for s in sent if s.route == faulted), started),
        "forwarded": rates(
            (r.at for r in received if r.route == faulted and r.at is not None), started
        ),
    }
    events = sorted(target.events + load.events)
    return DrillResult(
        scenario.name,
        scenario.description,
        fault_at,
        events,
        reports,
        replication_loss,
        broken,
        timeline,
        started,
        faulted,
    )


class SlotMap:
    """Which master serves each slot, from CLUSTER SLOTS of the first node that
    answers; asked again at most every ``RELOCATE_EVERY`` seconds (or when ``fresh``)."""

    def __init__(self, nodes: Callable[[], list[Address]]) -> None:
        self._nodes = nodes
        self._owners: dict[int, Address] = {}
        self._read_at = 0.0
        self._lock = threading.Lock()

    def owner(self, slot: int, *, fresh: bool = False) -> Address:
        with self._lock:
            if fresh or time.monotonic() - self._read_at > RELOCATE_EVERY:
                self._refresh()
            if slot not in self._owners:
                raise RuntimeError(f"no master serves slot {slot} now")
            return self._owners[slot]

    def _refresh(self) -> None:
        for node in self._nodes():
            try:
                self._owners = slot_owners(node, timeout=0.3)
            except ProbeFailed:
                continue
            self._read_at = time.monotonic()
            return
