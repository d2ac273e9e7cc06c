"""A forwarder node: a reconcile loop over topology, coordination and tasks.

Each cycle reads the current topology, asks the coordinator which of the tasks it
calls for (``work.wanted_tasks``) this node may run now, starts those, stops the
others (gracefully: what is in flight is flushed, then the ownership is released),
and logs one status line. Single-node mode (no ``[coordination]``): the node owns
every task. With ZooKeeper (``coordination.coordinator``) the controller's assignment
and the task's ownership znode decide, and a lost session drops every task at once.
Topology changes and ZooKeeper watches wake the loop early; a master that moved
re-homes the tasks that read from it or write to it.

A watchdog thread (with coordination) gives the ZooKeeper session up when the event
loop stops beating for ``stall_timeout``: a stuck node cannot hold its tasks hostage.

Stop order (``stop`` set): tasks stop (flush, ack), ownership is released, membership
left, the session closed, then the watchers close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from redis_forwarder.config import ForwarderConfig, SourceConfig, load_config
from redis_forwarder.coordination.coordinator import ZooKeeperCoordinator
from redis_forwarder.coordination.decision import Coordinator, Decision, LocalCoordinator
from redis_forwarder.coordination.paths import SILENCE, STANDING_BY
from redis_forwarder.errors import (
    AuthenticationError,
    ForwarderError,
    UsageError,
    ZooKeeperRefusedError,
)
from redis_forwarder.eventloop import first_of
from redis_forwarder.fleet_view import FleetView
from redis_forwarder.follow import TopologyFollower
from redis_forwarder.forwarding.states import TaskState
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.forwarding.yielding import confirm_after
from redis_forwarder.model import Address, DeploymentKind, TaskKey, Topology
from redis_forwarder.observe import HealthServer, Metrics, Readiness
from redis_forwarder.placements import SOURCE, Placements
from redis_forwarder.progress import ProgressReport
from redis_forwarder.routes import RouteConfig
from redis_forwarder.standbys import Standbys
from redis_forwarder.task_maker import TaskMaker
from redis_forwarder.topology import TopologyWatcher
from redis_forwarder.topology.cluster import named_like, shard_names
from redis_forwarder.topology.standalone import refuse_replicas
from redis_forwarder.work import standby_tasks, wanted_tasks

log = logging.getLogger(__name__)
CYCLE = 1.0
# Seconds a starting node waits for a deployment that a failover or a restart explains
# (no server answers; the master the sentinels name is not master yet) before it gives
# up with the error; a wrong password or master name ends it at once.
START_PATIENCE = 60.0


def check_supported(config: ForwarderConfig) -> None:
    """Refuse, before anything starts, what this release cannot forward."""
    if not config.routes:
        raise UsageError(
            "the config has no [[route]]: nothing to forward; add one (docs/configuration.md)"
        )


# What ends the node from inside a cycle: its configuration is wrong, and trying again
# cannot help. Anything else is logged with its traceback, counted, and the next cycle
# runs (Patroni's run_cycle: one bad cycle must not end the node).
FATAL = (UsageError, AuthenticationError, ZooKeeperRefusedError)


def default_node_id(coordinated: bool) -> str:
    """Alone: the host name (the stream consumer name stays the same across restarts).
    Coordinated: host and pid, so that two nodes on one host never share an id."""
    host = socket.gethostname()
    return f"{host}-{os.getpid()}" if coordinated else host


class Node:
    def __init__(
        self, config: ForwarderConfig, metrics: Metrics | None = None, node_id: str | None = None
    ) -> None:
        check_supported(config)
        self.config = config
        self.metrics = metrics or Metrics()
        coordination = config.coordination
        self.metrics.fleet.configure(coordination.session_timeout if coordination else None)
        self.tasks: dict[TaskKey, Task] = {}
        self.standbys = Standbys(self._start_standby)  # issue 15: the tasks it stands by for
        self._watchers: dict[str, TopologyWatcher] = {}
        self._settings = {name: d.settings() for name, d in self._deployments().items()}
        self._placements = Placements(config, self._settings, self._watchers)
        self._wake = asyncio.Event()
        self._follower = TopologyFollower(
            self._all_tasks, lambda name: config.deployment(name).read_from, self._wake
        )
        self.health: HealthServer | None = None
        # The consumer name in stream groups, and the name in ZooKeeper.
        self.node_id = node_id or config.node.id or default_node_id(bool(config.coordination))
        self.coordinator: Coordinator = LocalCoordinator()
        self._maker = TaskMaker(
            self.node_id, self._settings, self._placements, self.metrics, self._wake.set
        )
        self._loop_beat = time.monotonic()
        self._reload_from: Path | None = None
        self._report = ProgressReport()
        # The tasks this node stands by for, as the coordinator last said (issue 15).
        self.standing_by: set[TaskKey] = set()
        self._held_said: tuple[int, set[TaskKey]] | None = None  # what _hold_or_drop said last
        self._cut: list[str] = []  # deployments silent to this node past the cut-off time
        # What /readyz answers from: an immutable snapshot the loop replaces each cycle
        # (the HTTP thread iterated the live task dict while the loop changed it:
        # "dictionary changed size during iteration" under churn).
        self._readiness = Readiness(False, {"tasks": {}, "role": "starting"})

    def request_reload(self, path: Path) -> None:
        """Re-read the config at the next cycle (SIGHUP). Safe from a signal handler."""
        self._reload_from = path
        self._wake.set()

    async def _reload(self, path: Path) -> None:
        """Take new routes from ``path``: tasks of changed or removed routes stop (and
        release their ownership), the rest go on; the fleet learns the new fingerprint.
        Deployments, coordination and node settings need a restart: a reload that
        changes them is refused, and the node keeps its config."""
        try:
            new = load_config(path)
            check_supported(new)
            refuse_replicas({n: w.current for n, w in self._watchers.items()}, new.routes)
        except ForwarderError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        for part in ("source", "targets", "coordination", "node"):
            if getattr(new, part) != getattr(self.config, part):
                log.error("reload refused: [%s] changed; restart the node for that", part)
                return
        old_routes = {r.name: r for r in self.config.routes}
        changed = {r.name for r in new.routes if old_routes.get(r.name) != r}
        changed |= old_routes.keys() - {r.name for r in new.routes}
        self.config = new
        self._placements.config = new
        for key in [k for k in self.tasks if k[0] in changed]:
            log.info("stopping %s@%s: its route changed", *key)
            await self._stop(key, graceful=True)
            await self.coordinator.released(key)
        await self.standbys.drop(changed)  # the next cycle starts them on the new route
        await self.coordinator.reconfigured(new.fingerprint())
        log.info("config reloaded from %s: %d routes changed", path, len(changed))

    def _deployments(self) -> dict[str, SourceConfig]:
        return {SOURCE: self.config.source, **self.config.targets}

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set. Raises if a deployment or ZooKeeper cannot be
        reached at start."""
        watchdog: threading.Thread | None = None
        halt_watchdog = threading.Event()
        try:
            if self.config.coordination is not None:
                coordinator = ZooKeeperCoordinator(
                    self.config.coordination,
                    self.node_id,
                    self.config.fingerprint(),
                    self.config.node.metrics,
                    self._wake.set,
                    self.config.cut_off_after,
                )
                self.coordinator = coordinator
                await coordinator.start()
                watchdog = self._start_watchdog(coordinator, halt_watchdog)
            for name, settings in self._settings.items():
                watcher = TopologyWatcher(settings, self.config.node.topology_interval)
                self._watchers[name] = watcher
                await watcher.start(patience=START_PATIENCE)
            refuse_replicas({n: w.current for n, w in self._watchers.items()}, self.config.routes)
            followers = [
                asyncio.create_task(self._follower.follow(name, watcher))
                for name, watcher in self._watchers.items()
            ]
            if self.config.node.metrics:
                self.health = HealthServer(
                    Address.parse(self.config.node.metrics),
                    self.metrics,
                    self.readiness,
                    # the fleet page, unless the config turns it off
                    FleetView(self.config, self.node_id, self.readiness)
                    if self.config.node.fleet_page
                    else None,
                )
                self.health.start()
                log.info("metrics and health on http://%s", self.health.address)
            beats = asyncio.create_task(self._beat())
            while not stop.is_set():
                self._wake.clear()
                if self._reload_from is not None:
                    path, self._reload_from = self._reload_from, None
                    await self._reload(path)
                await self._guarded_cycle()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CYCLE):
                        await first_of(stop.wait(), self._wake.wait())
            for follower in [*followers, beats]:
                follower.cancel()
        finally:
            halt_watchdog.set()
            await self._stop_tasks()
            await self.coordinator.leave()
            for watcher in self._watchers.values():
                await watcher.close()
            if self.health is not None:
                self.health.stop()
            if watchdog is not None:
                watchdog.join(2)

    async def _beat(self) -> None:
        """The loop's heartbeat, for the watchdog thread and /healthz: apart from the
        cycle, which may wait on ZooKeeper while the loop itself is fine. It publishes
        /readyz's snapshot too, so that answer is never more than a beat old."""
        while True:
            self._loop_beat = time.monotonic()
            if self.health is not None:
                self.health.beat()
                self._publish_readiness()
            await asyncio.sleep(0.2)

    def _start_watchdog(
        self, coordinator: ZooKeeperCoordinator, halt: threading.Event
    ) -> threading.Thread:
        assert self.config.coordination is not None
        limit = self.config.coordination.stall_limit

        def watch() -> None:
            fired_for = 0.0
            while not halt.wait(0.2):
                beat = self._loop_beat
                if time.monotonic() - beat > limit and beat != fired_for:
                    fired_for = beat  # once per stall
                    coordinator.session.expire_now(
                        f"the event loop made no progress for {limit:.1f}s"
                    )

        thread = threading.Thread(target=watch, name="watchdog", daemon=True)
        thread.start()
        return thread

    def source_topology(self) -> Topology:
        """The source deployment as the node sees it now (after ``run`` has started)."""
        return self.topology(SOURCE)

    def topology(self, deployment: str) -> Topology:
        """``source`` or a target's name, as the node sees it now."""
        return self._watchers[deployment].current

    def readiness(self) -> Readiness:
        """The last cycle's answer for /readyz (any thread may call this)."""
        return self._readiness

    def _publish_readiness(self) -> None:
        tasks = {task.name: task.forwarding for task in self.tasks.values()}
        coordinated = self.config.coordination is not None
        ok = all(tasks.values()) and (
            self.coordinator.session_state == "connected" if coordinated else bool(tasks)
        )
        details = {
            "tasks": tasks,
            "role": self.coordinator.role,
            "zookeeper": self.coordinator.session_state,
        }
        if self.standing_by:
            details["standing_by"] = sorted(f"{r}@{s}" for r, s in self.standing_by)
        if refused := {t.name: t.refused_by_sink for t in self.tasks.values() if t.refused_by_sink}:
            details["refused_by_sink"] = refused
        self._readiness = Readiness(ok, details)  # one assignment: the thread sees old or new

    async def _guarded_cycle(self) -> None:
        """One cycle that cannot end the node by accident: an unexpected error is
        logged with its traceback and counted, and the next cycle runs; only a fatal
        configuration error (``FATAL``) ends the node."""
        try:
            await self._reconcile()
        except FATAL:
            raise
        except Exception:
            self.metrics.cycle_errors.inc()
            log.exception("reconcile cycle failed; the next cycle runs in %.0fs", CYCLE)

    def _observe_coordination(self, wanted: set[TaskKey]) -> None:
        state = self.coordinator.session_state
        controller = self.coordinator.role == "controller"
        self.metrics.session.set({"connected": 1, "suspended": 0.5, "lost": 0}.get(state, 1))
        self.metrics.controller.set(1 if controller else 0)
        self.metrics.owned.set(len(self.tasks))
        if paused := self.coordinator.paused_routes():  # a paused route's tasks run nowhere
            wanted = {task for task in wanted if task[0] not in paused}
        self.metrics.fleet.observe(controller, wanted, self.coordinator.running_tasks)

    async def _reconcile(self) -> None:
        self.metrics.cycles.inc()
        source = self._watchers[SOURCE]
        cluster = source.current.kind is DeploymentKind.CLUSTER
        # Each route's shards are those of the deployment it reads (issue 20).
        topologies = {name: watcher.current for name, watcher in self._watchers.items()}
        wanted = wanted_tasks(self.config.routes, topologies)
        names = shard_names(source.current) if cluster else None
        coordinated = self.config.coordination is not None
        standbys = standby_tasks(self.config.routes, wanted, coordinated)
        together = self.config.together  # a pub/sub bridge's directions: one node
        confirm = {r.name: confirm_after(r.heartbeat) for r in self.config.routes}
        decision = await self.coordinator.cycle(
            wanted, self._progress(), names, standbys, together, confirm
        )
        self.standing_by = decision.stand_by
        if cluster and decision.shard_names and set(decision.shard_names) != set(names or {}):
            self._follow_shard_names(decision.shard_names)
        held = await self._hold_or_drop(decision, standbys) | (decision.held & self.tasks.keys())
        leaving = sorted((self.tasks.keys() - decision.run.keys() - held) | decision.release)
        # All at once: one after the other, each graceful flush in turn, a node handing
        # over hundreds of tasks kept their next owners waiting (issue 18).
        await asyncio.gather(*(self._let_go(key) for key in leaving))
        for key in [k for k, task in self.tasks.items() if task.state is TaskState.STOPPED]:
            # Its supervisor ended without being stopped: a bug. Start it afresh below.
            log.error("%s@%s ended by itself; starting it again", *key)
            del self.tasks[key]
        for key, epoch in sorted(decision.run.items()):
            task = self.tasks.get(key)
            if task is not None and task.epoch != epoch:
                await self._stop(key, graceful=False)  # owned anew: a new epoch
            elif task is not None and not task.of_this_session:
                task.resume()  # held, the same epoch: the same owner znode, never let go
            if key not in self.tasks and (promoted := self.standbys.promote(key, epoch)):
                self.tasks[key] = promoted  # its standby: the ring replays what we missed
            if key not in self.tasks:
                route = next(r for r in self.config.routes if r.name == key[0])
                self._start(route, key[1], epoch)
        await self.standbys.follow(decision.stand_by - self.tasks.keys())
        self._observe_coordination(wanted)
        self._restart_wedged()
        self._publish_readiness()
        refusing = sum(1 for t in self.tasks.values() if t.refused_by_sink)
        running = sum(1 for t in self.tasks.values() if t.forwarding)
        received = sum(t.metrics.received for t in self.tasks.values())
        open_gaps = sum(1 for t in self.tasks.values() if t.in_gap)
        log.info(
            "status: %d/%d tasks forwarding, %d received, %d in a gap, %d refused by its "
            "sink, standby for %d (%s, ZooKeeper %s)",
            running,
            len(self.tasks),
            received,
            open_gaps,
            refusing,
            len(self.standing_by),
            self.coordinator.role,
            self.coordinator.session_state,
        )

    def _silence(self) -> dict[str, float]:
        """Per deployment, seconds since any of its servers or sentinels answered this
        node. Published with the progress: the controller gives no task to a node long
        silent from a deployment that another node still hears (a partition), and said
        here when it starts and ends."""
        silence = {name: round(w.silent_for, 2) for name, w in self._watchers.items()}
        limit = self.config.cut_off_after
        cut = sorted(name for name, seconds in silence.items() if seconds > limit)
        if cut != self._cut:
            if cut:
                log.error(
                    "no answer from %s for over %.0fs: if other nodes reach it, the "
                    "controller gives this node's tasks to them",
                    ", ".join(f"{name} ({silence[name]:.0f}s)" for name in cut),
                    limit,
                )
            else:
                log.warning("every deployment answers this node again")
            self._cut = cut
        self.metrics.cut_off.set(1 if cut else 0)
        return silence

    def _follow_shard_names(self, names: dict[str, Any]) -> None:
        """Name the source's shards as the controller does. On Redis 7.0 shard ids are
        derived and carried from view to view, so a node whose watcher once read an
        odd view (a node that had just joined) can name a shard differently from the
        others, and would never run a task assigned under the other name."""
        watcher = self._watchers[SOURCE]
        renamed = named_like(watcher.current, names)
        if {s.id for s in renamed.shards} == {s.id for s in watcher.current.shards}:
            return  # the controller's view differs in what it covers, not in names
        for change in watcher.rename(renamed):
            log.info("topology source (the controller's shard names): %s", change.to_json())
        self._wake.set()

    async def _let_go(self, key: TaskKey) -> None:
        """Stop ``key`` if it runs here, then release its ownership."""
        if key in self.tasks:
            log.info("stopping %s@%s: no longer this node's", *key)
            # Cut off from Redis, or held through a lost session (its gate shut for
            # good), a graceful flush would only wait out its timeout: 5 s of a stalled
            # cycle after a ZooKeeper outage (issue 17).
            graceful = not self._cut and self.tasks[key].of_this_session
            await self._stop(key, graceful=graceful)
        await self.coordinator.released(key)

    async def _hold_or_drop(self, decision: Decision, standbys: set[TaskKey]) -> set[TaskKey]:
        """The session is gone (``drop_all``): the tasks with a standby are held, writing
        nothing (their gate is the lost session's), until ZooKeeper says whether they
        are still ours: ZooKeeper stopped as a whole expires no session, and the same
        session comes back with the same owner znodes (``resume``); a session truly
        expired gives them to their standbys. Dropping them lost what they had read and
        not written (a chaos campaign, issue 17: 4.4 s of pub/sub after a ZooKeeper
        outage, the node owning the same epoch again a second later). Others stop."""
        if not decision.drop_all:
            self._held_said = None
            return set()
        held = {key for key in self.tasks if key in standbys}
        dropped = [key for key in self.tasks if key not in held]
        # Said when it changes, not every cycle of an outage (a minute of ZooKeeper down
        # wrote sixty copies of it at ERROR).
        if (dropped or held) and (len(dropped), held) != self._held_said:
            self._held_said = (len(dropped), held)
            log.error(
                "the ZooKeeper session is gone: %d tasks dropped, %d with a standby held "
                "(writing nothing) until it is back",
                len(dropped), len(held),
            )  # fmt: skip
        for key in dropped:
            await self._stop(key, graceful=False)
        return held

    def _restart_wedged(self) -> None:
        """A running task whose loop stopped turning (while writing is allowed) is
        wedged: every wait in it has a deadline, so that is a bug; restart it on fresh
        connections rather than let it hold its task. (The loop as a whole stalling is
        the watchdog thread's to handle: this check runs on the loop.)"""
        if not self.coordinator.gate.may_write():
            return  # tasks wait at the gate: not wedged
        now = time.monotonic()
        for task in self.tasks.values():
            silent = now - task.progress_at
            # A task held through a lost session waits at its own gate, shut until the
            # node resumes it: no wedge (restarted, it lost what it had read).
            if task.running and task.of_this_session and silent > task.wedged_after():
                log.error(
                    "%s wedged: its loop made no progress for %.1fs; restarting it",
                    task.name,
                    silent,
                )
                task.rehome(f"wedged: no progress for {silent:.1f}s")

    def _progress(self) -> dict[str, Any]:
        """What this node tells the fleet (``status`` reads it)."""
        progress = self._report.of(self.tasks)
        if self.config.coordination is not None:
            progress[SILENCE] = self._silence()
            progress[STANDING_BY] = self.standbys.status()
        return progress

    async def _stop(self, key: TaskKey, graceful: bool) -> None:
        await self.tasks.pop(key).stop(graceful)

    def _start(self, route: RouteConfig, shard: str, epoch: int = 0) -> None:
        self.tasks[(route.name, shard)] = self._task(route, shard, epoch, standby=False)

    def _start_standby(self, key: TaskKey) -> Task:
        route = next(r for r in self.config.routes if r.name == key[0])
        return self._task(route, key[1], 0, standby=True)

    def _task(self, route: RouteConfig, shard: str, epoch: int, standby: bool) -> Task:
        task = self._maker.make(self.config, self.coordinator, route, shard, epoch, standby)
        task.start()
        return task

    def _all_tasks(self) -> list[tuple[TaskKey, Task]]:
        """Owned and standby tasks alike: both follow the topology."""
        return [*self.tasks.items(), *self.standbys.tasks.items()]

    async def _stop_tasks(self) -> None:
        """Stop every task gracefully, all at once, then release their ownership."""
        await self.standbys.stop_all()
        keys = list(self.tasks)
        if keys:  # at INFO: a clean stop is no alarm (issue 14)
            names = ", ".join(f"{route}@{shard}" for route, shard in sorted(keys))
            log.info("stopping: handing off %d task(s): %s", len(keys), names)
        await asyncio.gather(*(task.stop(graceful=True) for task in self.tasks.values()))
        self.tasks.clear()
        for key in keys:
            await self.coordinator.released(key)
