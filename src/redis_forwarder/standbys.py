"""A node's standby tasks (issue 15): started for the tasks the controller named this
node the standby of, stopped when it no longer does, and handed to the node as the
task itself when this node becomes the owner (``promote``): the same subscription,
the same ring, no seam. Apart from ``node`` so that the reconcile loop stays one job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from redis_forwarder.config import CoordinationConfig
from redis_forwarder.forwarding.states import TaskState
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.model import TaskKey
from redis_forwarder.routes import RouteConfig

log = logging.getLogger(__name__)


def wants_standby(route: RouteConfig, coordination: CoordinationConfig | None) -> bool:
    """A pub/sub route in a fleet has a standby unless it says ``standby = false``:
    its owner leaves watermarks. (Streams keep their entries in Redis.)"""
    return coordination is not None and route.wants_standby


class Standbys:
    def __init__(self, start: Callable[[TaskKey], Task]) -> None:
        """``start(key)``: a started standby task for ``key``."""
        self.start = start
        self.tasks: dict[TaskKey, Task] = {}

    async def follow(self, wanted: Iterable[TaskKey]) -> None:
        """Stand by for exactly ``wanted`` (the tasks this node does not own)."""
        wanted = set(wanted)
        for key in sorted(self.tasks.keys() - wanted):
            log.info("%s@%s: no longer its standby", *key)
            await self.tasks.pop(key).stop(graceful=False)
        for key in [k for k, t in self.tasks.items() if t.state is TaskState.STOPPED]:
            log.error("%s@%s: its standby ended by itself; starting it again", *key)
            del self.tasks[key]
        for key in sorted(wanted - self.tasks.keys()):
            self.tasks[key] = self.start(key)

    def promote(self, key: TaskKey, epoch: int) -> Task | None:
        """This node owns ``key`` now: its standby task, promoted, or None when there
        was none (the owner starts afresh)."""
        task = self.tasks.pop(key, None)
        if task is None or task.state in (TaskState.STOPPING, TaskState.STOPPED):
            return None
        task.promote(epoch)
        return task

    async def drop(self, routes: set[str]) -> None:
        """Stop the standbys of ``routes`` (changed by a reload: a ring kept under the
        old route would replay what the new one does not read)."""
        for key in sorted(k for k in self.tasks if k[0] in routes):
            await self.tasks.pop(key).stop(graceful=False)

    async def stop_all(self) -> None:
        for key in sorted(self.tasks):
            await self.tasks.pop(key).stop(graceful=False)

    def status(self) -> dict[str, dict[str, object]]:
        """Per task: its state, where it listens, and its ring (for status)."""
        return {
            f"{route}@{shard}": task.standby_status() for (route, shard), task in self.tasks.items()
        }
