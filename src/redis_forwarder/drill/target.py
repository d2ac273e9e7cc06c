"""The lab and its fleet as drill scenarios see them (``scenarios.Target``), for any
kind of deployment: where masters, replicas and sinks are now, who owns the drill task,
signals and restarts by lab process name, network namespaces for partitions.

The lab must run forwarder nodes with the drill routes (docs/drills.md): the target
reads the first forwarder node's config that the lab wrote for the deployment, the
routes and the fleet's ZooKeeper.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from redis_forwarder.config import CoordinationConfig, ForwarderConfig, load_config
from redis_forwarder.coordination.fleet import fleet_status
from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.drill.partition import TAGS, Partition, free_tags
from redis_forwarder.drill.reshape import ClusterReshaper
from redis_forwarder.drill.slot_map import SlotMap
from redis_forwarder.drill.workload import PUBSUB_ROUTE, Lane, drill_routes, workload
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab
from redis_forwarder.lab.forwarders import CONFIG_FILE
from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.lab.spec import TopologySpec, load_spec
from redis_forwarder.model import Address, DeploymentKind, Topology
from redis_forwarder.standbys import wants_standby
from redis_forwarder.topology import discover
from redis_forwarder.topology.slots import key_slot
from redis_forwarder.work import wanted_tasks


class FleetTarget:
    """What every drill's target does with its fleet (``LabTarget``, and the bridge's):
    note an event, read the fleet's status and its tasks' owners."""

    config: ForwarderConfig
    coordination: CoordinationConfig
    session_timeout: float
    paths: Paths
    events: list[tuple[float, str]]
    progress: Callable[[str], None]

    def note(self, event: str) -> None:
        self.events.append((time.time(), event))
        self.progress(event)

    def status(self) -> dict[str, Any]:
        with FleetClient(
            self.coordination.zookeeper,
            timeout=self.session_timeout,
            credentials=self.coordination.credentials(),
        ) as client:
            return fleet_status(client, self.paths, self.config.cut_off_after)

    def owners(self) -> dict[tuple[str, str], tuple[str | None, int | None]]:
        return {
            (t["route"], t["shard"]): (t["owner"] if t["running"] else None, t["epoch"])
            for t in self.status()["tasks"]
        }


class LabTarget(FleetTarget):
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
        pubsub_route, _streams = drill_routes(self.config)  # a clear error when unusable
        assert self.config.coordination is not None
        self.coordination = self.config.coordination
        self.standby = wants_standby(pubsub_route, self.coordination)
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

    def has_standby(self, route: str) -> bool:
        """Whether the drill's ``route`` ("pubsub@SHARD") runs with a hot standby."""
        return self.standby and route.startswith("pubsub@")

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
        """Start a process again the same way; a node isolated in a network namespace
        of its own (``isolate_nodes``) starts in it again, its links as they are."""
        partition = self._partitions.get(process)
        self.lab.restart(process, wrap=partition.wrap if partition is not None else ())
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
        tags = free_tags(len(nodes), os.getpid() % TAGS)
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
            for tag, name in zip(tags, nodes, strict=True):
                partition = Partition(addresses, tag=tag)
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
        if victim is None:
            raise RuntimeError("the drill task has no owner to cut off")
        return self.cut(victim, link)

    def cut(self, victim: str, link: str) -> Callable[[], None]:
        """Take down one node's link to Redis or to ZooKeeper (the node isolated by
        ``isolate_nodes``). Returns the undo: the link up again."""
        partition = self._partitions.get(victim)
        if partition is None:
            raise RuntimeError(f"{victim} is not in a network namespace of its own")
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
