"""How a node's tasks follow their deployments' topology: a master that moved, slots
that moved, a replica healthy again. Apart from ``node`` so that its reconcile loop
stays one job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis_forwarder.forwarding.placement import serves
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.model import TaskKey, Topology
from redis_forwarder.topology import TopologyWatcher
from redis_forwarder.topology.diff import ChangeKind

log = logging.getLogger(__name__)


class TopologyFollower:
    def __init__(
        self,
        tasks: Callable[[], list[tuple[TaskKey, Task]]],
        read_from: Callable[[str], str],
        wake: asyncio.Event,
    ) -> None:
        """``tasks()``: the node's tasks now, owned and standby; ``read_from(name)``: a
        deployment's read_from setting; ``wake``: set after each update, so the
        reconcile loop runs at once."""
        self.tasks = tasks
        self.read_from = read_from
        self.wake = wake

    async def follow(self, name: str, watcher: TopologyWatcher) -> None:
        async for update in watcher.updates():
            for change in update.changes:
                log.info("topology %s: %s", name, change.to_json())
                if change.kind is ChangeKind.SLOTS_MOVED:
                    for (_route, shard), task in self.tasks():
                        keyed = task.route.from_.sharded or task.route.from_.streams
                        reads = task.route.from_.deployment == name
                        if reads and shard == change.shard and keyed:
                            task.rehome(f"slots of {change.shard} moved")
                    continue
                if change.kind is ChangeKind.REPLICA_ADDED:
                    self._back_to_replicas(name, change.shard, watcher.current)
                if change.kind is not ChangeKind.MASTER_CHANGED:
                    continue
                for (_route, shard), task in self.tasks():
                    read = task.route.from_.deployment
                    reads_it = name == read and shard == change.shard
                    writes_it = task.route.to.target == name and (
                        name != read or shard == change.shard
                    )
                    if writes_it and task.listening:
                        writes_it = False  # a standby writes nothing (yet)
                    if writes_it or (reads_it and not _stays(task, watcher.current)):
                        task.rehome(f"{name} master of {change.shard} moved to {change.master}")
            self.wake.set()

    def _back_to_replicas(self, name: str, shard: str, topology: Topology) -> None:
        """With read_from = "replica", a task that fell back to the master returns to a
        replica as soon as one is healthy again (it stayed on the master: issue 14)."""
        if self.read_from(name) != "replica":
            return
        found = topology.shard(shard)
        for (_route, task_shard), task in self.tasks():
            reads_master = found is not None and task.source_address == found.master.address
            reads = task.route.from_.deployment == name
            if reads and task_shard == shard and reads_master and not task.route.from_.streams:
                task.rehome(f"a replica of {shard} is healthy again")


def _stays(task: Task, topology: Topology) -> bool:
    """A pub/sub task stays subscribed where it is, while that server is still in the
    deployment, when moving would only open a seam: classic pub/sub on a cluster (every
    node receives every PUBLISH: a move lost the messages published during the switch,
    and one read on the old node could arrive again on the new one over the cluster
    bus; a CI run of the cluster-failover drill: 2 lost and 2 duplicated), and a
    standby (issue 15: a replica hears every PUBLISH of its master, whichever it is; a
    move would be a hole in its ring)."""
    where = task.source_address
    moves_for_nothing = task.placement.reads_any_node or (
        task.listening and not task.route.from_.streams
    )
    stays = moves_for_nothing and where is not None and serves(topology, where)
    if stays:
        log.info("%s: stays subscribed on %s, still in the deployment", task.name, where)
    return stays
