"""The lab and its fleet as a ``drill bridge-loop`` sees them: the bridge (found in
the first forwarder node's config, ``bridge_plan``), where each side's master is now,
who owns the bridge's tasks, and the known state the drill waits for before and
after each fault. Signals go to the pids the lab recorded, by process name."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from redis_forwarder.config import ForwarderConfig, load_config
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.drill.bridge_plan import Bridge, Side, find_bridge
from redis_forwarder.drill.settle import replication_lagging, until_settled
from redis_forwarder.drill.target import FleetTarget
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab
from redis_forwarder.lab.forwarders import CONFIG_FILE
from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.lab.readiness import fleet_unsettled
from redis_forwarder.model import Address, DeploymentKind, Topology
from redis_forwarder.retry import Deadline
from redis_forwarder.topology import discover
from redis_forwarder.work import wanted_tasks

LOST_TO_FAILOVER = "forwarder_sink_failover_lost_entries_total"


class BridgeTarget(FleetTarget):
    def __init__(self, lab: Lab, progress: Callable[[str], None]) -> None:
        self.lab = lab
        self.progress = progress
        forwarders = [p for p in lab.state().processes if p.kind == "forwarder"]
        if not forwarders:
            raise UsageError(
                f"the lab in {lab.directory} runs no forwarder nodes; drill bridge-loop needs "
                "a spec with [forwarders] bridging two deployments both ways "
                "(topology/bridge.toml)"
            )
        self.config: ForwarderConfig = load_config(Path(forwarders[0].data_dir) / CONFIG_FILE)
        self.bridge: Bridge = find_bridge(self.config)
        if self.config.coordination is None:
            raise UsageError("drill bridge-loop needs a fleet: the config has no [coordination]")
        self.coordination = self.config.coordination
        self.session_timeout = self.coordination.session_timeout
        self.paths = Paths(self.coordination.root)
        self.kind = DeploymentKind.SENTINEL  # no cluster side (bridge_plan refuses one)
        self.events: list[tuple[float, str]] = []

    def pubsub_tasks(self, status: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The bridge's pub/sub tasks (both directions) as ``status`` shows them."""
        names = {route.name for route in self.bridge.pubsub.values()}
        tasks = (status or self.status())["tasks"]
        return [t for t in tasks if t["route"] in names]

    def signal(self, process: str, sig: signal.Signals) -> None:
        self.lab.send_signal(process, sig)

    def restart(self, process: str) -> None:
        self.lab.restart(process)
        self.note(f"restarted {process}")

    def counted_losses(self) -> dict[str, float]:
        """Per stream route of the bridge, the entries its tasks counted lost to a sink's
        failover (``forwarder_sink_failover_lost_entries_total``), summed over the nodes
        that answer now."""
        names = {route.name for route in self.bridge.streams.values()}
        found = dict.fromkeys(names, 0.0)
        for record in self.lab.state().processes:
            if record.kind != "forwarder":
                continue
            try:
                with urllib.request.urlopen(f"http://{record.address}/metrics", timeout=2) as page:
                    text = page.read().decode()
            except OSError:
                continue  # a node that does not answer counts nothing here
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    route = sample.labels.get("route", "")
                    if sample.name == LOST_TO_FAILOVER and route in names:
                        found[route] += sample.value
        return found

    # -- the deployments

    def sentinels(self, side: Side) -> list[Address]:
        return [Address.parse(a) for a in self.config.deployment(side.name).addresses]

    def master(self, label: str) -> Address:
        """Where a side's master is now (the side by the name bridges call it), as the
        first of its sentinels that answers says."""
        side = self.bridge.side(label)
        seeds = self.sentinels(side)
        if side.kind is DeploymentKind.STANDALONE:
            return seeds[0]
        for sentinel in seeds:
            try:
                host, port = redis_call(
                    sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", side.master, timeout=0.5
                )
                return Address(str(host), int(port))
            except (ProbeFailed, TypeError, ValueError):
                continue
        raise RuntimeError(f"no sentinel names the master of {side.master}")

    def nodes(self, side: Side) -> list[Address]:
        """Every Redis node of a side: its master and replicas as the lab runs them."""
        if side.kind is DeploymentKind.STANDALONE:
            return self.sentinels(side)
        return [
            Address.parse(r.address)
            for r in self.lab.state().processes
            if r.kind == "redis" and r.shard == side.master
        ]

    def topologies(self) -> dict[str, Topology]:
        return {
            s.name: discover(self.config.deployment(s.name).settings()) for s in self.bridge.sides
        }


def settle(target: BridgeTarget, what: str) -> None:
    """Until the lab is whole: every process runs, every replica of both sides is linked
    and in sync, every node is a member, every task of every route runs where it is
    assigned, and every standby listens. Bounded by SETTLE_TIMEOUT."""
    until_settled(lambda: _unsettled(target), what)


def _unsettled(target: BridgeTarget) -> str:
    statuses = target.lab.status(probe=False)
    dead = [s.record.name for s in statuses if not s.running]
    if dead:
        return f"not running: {', '.join(dead)}"
    try:
        topologies = target.topologies()
    except Exception as exc:  # topology in the middle of a change
        return f"topology: {exc}"
    both = Topology(
        DeploymentKind.SENTINEL, tuple(s for t in topologies.values() for s in t.shards)
    )
    try:
        lagging = replication_lagging(target, statuses, both)
    except (ProbeFailed, RuntimeError) as exc:
        return f"replication: {exc}"
    if lagging:
        return f"not in sync: {', '.join(lagging)}"
    try:
        status = target.status()
    except Exception as exc:  # ZooKeeper coming back
        return f"fleet status: {exc}"
    nodes = {s.record.name for s in statuses if s.record.kind == "forwarder"}
    wanted = wanted_tasks(target.config.routes, topologies)
    tasks = {(t["route"], t["shard"]): t for t in status["tasks"]}
    moving = [f"{r}@{s}" for r, s in sorted(wanted) if (r, s) not in tasks]
    if moving:
        return f"tasks not assigned yet: {', '.join(moving)}"
    return fleet_unsettled(status, nodes, len(wanted)) or ""


def wait_for_takeover(target: BridgeTarget, victim: str, timeout: float) -> dict[str, Any]:
    """Until every pub/sub task of the bridge runs on a node other than ``victim``;
    returns the tasks then. Bounded by ``timeout``."""
    deadline = Deadline(timeout)
    tasks: list[dict[str, Any]] = []
    while not deadline.expired:
        try:
            tasks = target.pubsub_tasks()
        except Exception:  # ZooKeeper busy with the dead session: ask again
            tasks = []
        if tasks and all(t["running"] and t["owner"] not in (None, victim) for t in tasks):
            return {f"{t['route']}@{t['shard']}": t for t in tasks}
        time.sleep(0.1)  # polling, with the deadline above
    shown = ", ".join(f"{t['route']}@{t['shard']}: {t['owner']}" for t in tasks) or "no tasks"
    raise RuntimeError(
        f"the bridge's pub/sub tasks were not taken over in {timeout:.0f}s ({shown})"
    )


def wait_for_new_master(target: BridgeTarget, side: str, old: Address, timeout: float) -> Address:
    """Until the side's sentinels name a master other than ``old``. Bounded."""
    deadline = Deadline(timeout)
    while not deadline.expired:
        try:
            now = target.master(side)
        except RuntimeError:
            now = old
        if now != old:
            return now
        time.sleep(0.1)  # polling, with the deadline above
    raise RuntimeError(f"{side}'s sentinels still name {old} {timeout:.0f}s after the failover")
