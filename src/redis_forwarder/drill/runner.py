"""Running one drill on a lab that is up: restore a known state, load, inject, watch,
undo, read back, check. Every wait is bounded and says what it waited for.

The lab must run forwarder nodes with the drill routes (docs/drills.md): the runner
reads the first forwarder node's config that the lab wrote for the deployment, the
routes and the fleet's ZooKeeper.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_forwarder.config import ForwarderConfig, load_config
from redis_forwarder.coordination.fleet import fleet_status
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.zk import FleetClient
from redis_forwarder.drill import sinks
from redis_forwarder.drill.checker import RouteReport, check, guarantees_broken, rates
from redis_forwarder.drill.load import Load
from redis_forwarder.drill.scenarios import DRILL_TASK, Scenario
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab, probes
from redis_forwarder.lab.forwarders import CONFIG_FILE
from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline

log = logging.getLogger(__name__)
DRILL_ROUTES = ("drill", "drill-streams")
WARM_UP = 3.0
COOL_DOWN = 3.0
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
                "with [forwarders] and the drill routes (topology/ha.toml)"
            )
        self.config: ForwarderConfig = load_config(Path(forwarders[0].data_dir) / CONFIG_FILE)
        missing = set(DRILL_ROUTES) - {r.name for r in self.config.routes}
        if missing or self.config.coordination is None:
            raise UsageError(
                f"the lab's forwarders lack the drill routes {sorted(missing)}; see "
                "docs/drills.md for the two routes a drill spec needs"
            )
        self.coordination = self.config.coordination
        self.session_timeout = self.coordination.session_timeout
        self.paths = Paths(self.coordination.root)
        self.shards = list(self.config.source.masters) or ["main"]
        self.events: list[tuple[float, str]] = []

    # -- what scenarios use
    def note(self, event: str) -> None:
        self.events.append((time.time(), event))
        self.progress(event)

    def status(self) -> dict[str, Any]:
        with FleetClient(self.coordination.zookeeper, timeout=self.session_timeout) as client:
            return fleet_status(client, self.paths)

    def owners(self) -> dict[tuple[str, str], tuple[str | None, int | None]]:
        return {
            (t["route"], t["shard"]): (t["owner"] if t["running"] else None, t["epoch"])
            for t in self.status()["tasks"]
        }

    def owner(self, shard: str) -> str | None:
        return self.owners().get(("drill", shard), (None, None))[0]

    def controller(self) -> str | None:
        holder = self.status()["controller"]
        return str(holder) if holder else None

    def signal(self, process: str, sig: signal.Signals) -> None:
        self.lab.send_signal(process, sig)

    def restart(self, process: str) -> None:
        self.lab.restart(process)
        self.note(f"restarted {process}")

    def _replication_lagging(self, statuses: list[Any]) -> list[str]:
        lagging: list[str] = []
        for shard in self.shards if self.config.source.kind == "sentinel" else []:
            master = self.master(shard)
            for status in statuses:
                record = status.record
                if record.kind != "redis" or record.shard != shard:
                    continue
                if record.address == str(master):
                    continue
                try:
                    replication = probes.info(Address.parse(record.address), "replication")
                except ProbeFailed:
                    lagging.append(record.name)
                    continue
                linked = (
                    replication.get("role") == "slave"
                    and f"{replication.get('master_host')}:{replication.get('master_port')}"
                    == str(master)
                    and replication.get("master_link_status") == "up"
                    and not int(replication.get("master_sync_in_progress", 0))
                )
                if not linked:
                    lagging.append(record.name)
        return lagging

    def master(self, shard: str) -> Address:
        """Where the shard's master is now, as the first sentinel that answers says."""
        seeds = [Address.parse(a) for a in self.config.source.addresses]
        if self.config.source.kind == "standalone":
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

    def master_process(self, shard: str) -> str:
        address = str(self.master(shard))
        for record in self.lab.state().processes:
            if record.address == address and record.kind == "redis":
                return record.name
        raise RuntimeError(f"no lab process at {address}")

    def zookeeper_processes(self, role: str | None = None) -> list[str]:
        return [
            s.record.name
            for s in self.lab.status()
            if s.record.kind == "zookeeper" and (role is None or s.role == role)
        ]

    def sentinel(self) -> Address:
        return Address.parse(self.config.source.addresses[0])

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
        lagging = self._replication_lagging(statuses)
        if lagging:
            # A failover onto a replica that is not in sync loses data: that would be
            # the next drill's loss, not this one's.
            return f"replicas not in sync: {', '.join(lagging)}"
        try:
            status = self.status()
        except Exception as exc:  # ZooKeeper coming back
            return f"fleet status: {exc}"
        nodes = {s.record.name for s in statuses if s.record.kind == "forwarder"}
        missing = nodes - {str(m["id"]) for m in status["members"]}
        if missing:
            return f"not members yet: {', '.join(sorted(missing))}"
        tasks = {(t["route"], t["shard"]): t for t in status["tasks"]}
        wanted = [(r, s) for r in DRILL_ROUTES for s in self.shards]
        moving = [
            f"{r}@{s}" for r, s in wanted
            if (t := tasks.get((r, s))) is None or not t["running"] or t["owner"] != t["assigned"]
        ]  # fmt: skip
        unsettled = [t for t in status["tasks"] if t["owner"] != t["assigned"]]
        if moving or unsettled:
            return f"tasks moving: {', '.join(moving) or len(unsettled)}"
        return ""


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
    lab: Lab, scenario: Scenario, rate: float, progress: Callable[[str], None]
) -> DrillResult:
    target = LabTarget(lab, progress)
    target.settle("before the drill")
    run = uuid.uuid4().hex[:8]
    load = Load(run, target.shards, target.master, rate)
    started = time.time()
    progress(f"{scenario.name}: load at {rate:.0f} msg/s, run {run}")
    load.start()
    try:
        time.sleep(WARM_UP)  # steady traffic before the fault: a fixed span, not a wait
        fault_at = time.time()
        with OwnershipWatcher(target):
            undo = scenario.inject(target)
            time.sleep(scenario.hold(target))  # the fault lasts this long
            undo()
            target.settle("after the fault")
            recovered_at = time.time()
            target.note("whole again")
            time.sleep(COOL_DOWN)  # traffic after recovery: no loss allowed in it
    finally:
        load.stop()
    time.sleep(1.0)  # the last messages on their way to the sinks
    received = []
    kept: dict[str, set[int]] = {}
    for shard in target.shards:
        master = target.master(shard)
        client = redis.Redis(host=master.host, port=master.port, socket_timeout=10)
        received += sinks.received(run, shard, client)
        kept[shard] = sinks.kept_by_source(run, shard, client)
    sent, replication_loss = sinks.split_replication_loss(load.sent, kept)
    reports = check(sent, received, fault_at, recovered_at)
    broken: list[str] = []
    for name, report in reports.items():
        pubsub = name.startswith("pubsub@")
        bound = scenario.max_gap(target) if pubsub else None
        problems = guarantees_broken(report, may_lose=pubsub, max_gap=bound, may_reorder=not pubsub)
        broken += [f"{name}: {problem}" for problem in problems]
    faulted = f"pubsub@{DRILL_TASK[1]}"
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
    )
