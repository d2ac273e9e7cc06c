"""A forwarder node: a reconcile loop over topology and tasks.

Single-node mode (no ``[coordination]``): the node owns every task that the topology
calls for (``work.wanted_tasks``). Each cycle reads the current topology, starts the
tasks that should run and stops those no longer called for, then logs one status line.
Topology changes wake it early; a master that moved re-homes the tasks that read from
it or write to it.

Stop order (``stop`` set): tasks are cancelled (their connections close, what was in
flight is answered or counted), then the watchers close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from redis_forwarder.config import ForwarderConfig, RouteConfig, SourceConfig
from redis_forwarder.errors import NotBuiltError
from redis_forwarder.model import Address, DeploymentKind, Topology
from redis_forwarder.observe import HealthServer, Metrics
from redis_forwarder.resp import ConnectionLost
from redis_forwarder.sink.commands import Owner
from redis_forwarder.task import Endpoint, ForwardingTask
from redis_forwarder.topology import TopologyWatcher
from redis_forwarder.topology.diff import ChangeKind
from redis_forwarder.work import keys_served, wanted_tasks

log = logging.getLogger(__name__)
CYCLE = 1.0
SOURCE = "source"


def check_supported(config: ForwarderConfig) -> None:
    """Refuse, before anything starts, what this release cannot forward."""
    if not config.routes:
        raise NotBuiltError("the config has no [[route]]: nothing to forward")


class Node:
    def __init__(self, config: ForwarderConfig, metrics: Metrics | None = None) -> None:
        check_supported(config)
        self.config = config
        self.metrics = metrics or Metrics()
        self.tasks: dict[tuple[str, str], ForwardingTask] = {}
        self._runners: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._watchers: dict[str, TopologyWatcher] = {}
        self._settings = {name: d.settings() for name, d in self._deployments().items()}
        self._wake = asyncio.Event()
        self.health: HealthServer | None = None
        # The consumer name in stream groups: stable across restarts of this node.
        self.node_id = config.node.id or socket.gethostname()

    def _deployments(self) -> dict[str, SourceConfig]:
        return {SOURCE: self.config.source, **self.config.targets}

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set. Raises if a deployment cannot be reached at start."""
        try:
            for name, settings in self._settings.items():
                watcher = TopologyWatcher(settings, self.config.node.topology_interval)
                self._watchers[name] = watcher
                await watcher.start()
            followers = [
                asyncio.create_task(self._follow(name, watcher))
                for name, watcher in self._watchers.items()
            ]
            if self.config.node.metrics:
                self.health = HealthServer(
                    Address.parse(self.config.node.metrics), self.metrics, self.readiness
                )
                self.health.start()
                log.info("metrics and health on http://%s", self.health.address)
            while not stop.is_set():
                self._reconcile()
                if self.health is not None:
                    self.health.beat()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CYCLE):
                        await _first(stop.wait(), self._wake.wait())
            for follower in followers:
                follower.cancel()
        finally:
            await self._stop_tasks()
            for watcher in self._watchers.values():
                await watcher.close()
            if self.health is not None:
                self.health.stop()

    def source_topology(self) -> Topology:
        """The source deployment as the node sees it now (after ``run`` has started)."""
        return self._watchers[SOURCE].current

    def readiness(self) -> dict[str, bool]:
        return {task.name: task.running for task in self.tasks.values()}

    def _reconcile(self) -> None:
        wanted = wanted_tasks(self.config.routes, self._watchers[SOURCE].current)
        for key in wanted - self.tasks.keys():
            route = next(r for r in self.config.routes if r.name == key[0])
            self._start(route, key[1])
        for key in self.tasks.keys() - wanted:
            log.info("stopping %s@%s: the topology no longer calls for it", *key)
            self._runners.pop(key).cancel()
            del self.tasks[key]
        running = sum(1 for t in self.tasks.values() if t.running)
        received = sum(t.received for t in self.tasks.values())
        open_gaps = sum(1 for t in self.tasks.values() if t.gaps and t.gaps[-1].end is None)
        log.info(
            "status: %d/%d tasks forwarding, %d received, %d in a gap",
            running,
            len(self.tasks),
            received,
            open_gaps,
        )

    def _start(self, route: RouteConfig, shard: str) -> None:
        target = route.to.target
        cluster_sink = None
        if self._settings[target].kind is DeploymentKind.CLUSTER:
            watcher = self._watchers[target]
            cluster_sink = (
                lambda: watcher.current,
                self._settings[target].redis,
                watcher.refresh_soon,
            )
        source = self._watchers[SOURCE]
        task = ForwardingTask(
            route,
            shard,
            # XREADGROUP writes (the group's pending list): streams read from masters.
            locate_source=self._locator(
                SOURCE,
                shard,
                replicas=self.config.source.read_from == "replica" and not route.from_.streams,
            ),
            locate_sink=self._locator(
                route.to.target, shard if route.to.target == SOURCE else None
            ),
            on_lost=self._on_lost(route.to.target),
            metrics=self.metrics,
            consumer=self.node_id,
            cluster_sink=cluster_sink,
            keys_served=lambda: keys_served(route, shard, source.current),
            source_is_cluster=self._settings[SOURCE].kind is DeploymentKind.CLUSTER,
            # Without coordination there is one owner, always: epoch 0.
            owner=Owner(self.node_id, 0),
        )
        self.tasks[(route.name, shard)] = task
        self._runners[(route.name, shard)] = asyncio.create_task(task.run(), name=task.name)

    def _locator(
        self, deployment: str, shard: str | None, replicas: bool = False
    ) -> Callable[[int], Endpoint]:
        """Where a task connects now: the current master of ``shard`` (or, for another
        deployment, of its first shard). With ``replicas``, the shard's replicas come
        first and the master last, and each failed attempt moves to the next one, so a
        dead replica costs one retry, not the task."""
        credentials = self._settings[deployment].redis

        def locate(attempt: int) -> Endpoint:
            topology = self._watchers[deployment].current
            chosen = topology.shard(shard) if shard is not None else topology.shards[0]
            if chosen is None:  # the reconcile loop will stop the task
                raise ConnectionLost(deployment, f"shard {shard} is not in the topology")
            if not replicas:
                return Endpoint(chosen.master.address, credentials)
            candidates = [r.address for r in chosen.replicas] + [chosen.master.address]
            return Endpoint(candidates[attempt % len(candidates)], credentials)

        return locate

    def _on_lost(self, target: str) -> Callable[[str], None]:
        def lost(reason: str) -> None:
            self._watchers[SOURCE].refresh_soon(reason)
            if target != SOURCE:
                self._watchers[target].refresh_soon(reason)

        return lost

    async def _follow(self, name: str, watcher: TopologyWatcher) -> None:
        async for update in watcher.updates():
            for change in update.changes:
                log.info("topology %s: %s", name, change.to_json())
                if change.kind is ChangeKind.SLOTS_MOVED and name == SOURCE:
                    for (_route, shard), task in self.tasks.items():
                        keyed = task.route.from_.sharded or task.route.from_.streams
                        if shard == change.shard and keyed:
                            task.rehome(f"slots of {change.shard} moved")
                    continue
                if change.kind is not ChangeKind.MASTER_CHANGED:
                    continue
                for (_route, shard), task in self.tasks.items():
                    reads_it = name == SOURCE and shard == change.shard
                    writes_it = task.route.to.target == name and (
                        name != SOURCE or shard == change.shard
                    )
                    if reads_it or writes_it:
                        task.rehome(f"{name} master of {change.shard} moved to {change.master}")
            self._wake.set()

    async def _stop_tasks(self) -> None:
        for runner in self._runners.values():
            runner.cancel()
        await asyncio.gather(*self._runners.values(), return_exceptions=True)
        self._runners.clear()


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
