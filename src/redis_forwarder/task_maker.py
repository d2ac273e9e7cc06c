"""How a node makes one task (``forwarding.supervisor.Task``): its frozen spec, where its
servers are (``Placements``), and, in a fleet, the rings a standby or a yielding owner
listens into and whether a standby covers it now. Apart from ``node`` so that each
stays one job."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.coordination.decision import Coordinator
from redis_forwarder.forwarding.spec import TaskSpec
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.forwarding.yielding import wait_for
from redis_forwarder.model import DeploymentKind
from redis_forwarder.observe import Metrics
from redis_forwarder.placements import Placements
from redis_forwarder.routes import RouteConfig
from redis_forwarder.settings import DeploymentSettings
from redis_forwarder.standby.ring import Ring
from redis_forwarder.standbys import wants_standby


@dataclass(frozen=True)
class TaskMaker:
    node_id: str
    settings: Mapping[str, DeploymentSettings]
    placements: Placements
    metrics: Metrics
    wake_node: Callable[[], None]  # a yield's report goes out at once

    def make(
        self,
        config: ForwarderConfig,
        coordinator: Coordinator,
        route: RouteConfig,
        shard: str,
        epoch: int,
        standby: bool,
    ) -> Task:
        """The task, not started: an owner under ``epoch``, or a standby."""
        cluster = self.settings[route.from_.deployment].kind is DeploymentKind.CLUSTER
        watermarks = wants_standby(route, config.coordination)
        spec = TaskSpec(route, shard, self.node_id, epoch, cluster, watermarks)
        # The gate is this session's, not a later one's (a task of a lost session
        # must stay shut).
        placement = self.placements.for_task(route, shard, coordinator.gate.bound())
        coordination, rings = config.coordination, None
        if coordination is not None:  # an owner may yield: a ring of its own
            rings = partial(Ring, coordination.ring_window, coordination.standby_max_bytes)
        return Task(
            spec,
            placement,
            self.metrics,
            rings() if standby and rings is not None else None,
            rings=rings,
            wake_node=self.wake_node,
            covered=partial(coordinator.covered, (route.name, shard)),
            yield_wait=wait_for(route.heartbeat),
        )
