"""What a reconcile cycle decides (``Decision``), the coordinator's interface to the
node (``Coordinator``), and the coordinator of a node alone (``LocalCoordinator``).
Apart from ``coordinator`` (ZooKeeper's) so that each stays one job under the size
limit."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis_forwarder.gate import WriteGate
from redis_forwarder.model import TaskKey


@dataclass
class Decision:
    run: dict[TaskKey, int]  # task -> epoch: what may run now
    release: set[TaskKey] = field(default_factory=set)  # stop these, then ``released``
    drop_all: bool = False  # the session is gone: stop every owned task at once
    # The controller's names for the source's shards (a cluster's), with what they
    # cover: the fleet names shards as the controller does (see cluster.named_like).
    shard_names: dict[str, Any] | None = None
    # The tasks this node stands by for (assigned here as standby, and wanted): it
    # subscribes to them too, so that it can take over without a loss (issue 15).
    stand_by: set[TaskKey] = field(default_factory=set)
    # Tasks held through a session the node gave up, still its own as far as it knows,
    # not owned again yet: kept as they are (their gate shut), neither run nor let go.
    held: set[TaskKey] = field(default_factory=set)


class Coordinator(Protocol):
    gate: WriteGate

    @property
    def role(self) -> str: ...

    @property
    def session_state(self) -> str: ...

    async def start(self) -> None: ...

    async def cycle(
        self,
        wanted: Set[TaskKey],
        progress: dict[str, Any],
        shard_names: dict[str, Any] | None = None,
        wants_standby: Set[TaskKey] = frozenset(),
        together: Mapping[str, str] | None = None,
        yield_confirm: Mapping[str, float] | None = None,
    ) -> Decision: ...

    async def released(self, task: TaskKey) -> None: ...

    def running_tasks(self) -> set[TaskKey]: ...

    def paused_routes(self) -> set[str]: ...

    def covered(self, task: TaskKey) -> bool: ...

    async def reconfigured(self, fingerprint: str) -> None: ...

    async def leave(self) -> None: ...


class LocalCoordinator:
    """A node alone: every task is its own, the gate always open."""

    role = "alone"
    session_state = "none"

    def __init__(self) -> None:
        self.gate = WriteGate()

    async def start(self) -> None:
        return None

    async def cycle(
        self,
        wanted: Set[TaskKey],
        progress: dict[str, Any],
        shard_names: dict[str, Any] | None = None,
        wants_standby: Set[TaskKey] = frozenset(),
        together: Mapping[str, str] | None = None,
        yield_confirm: Mapping[str, float] | None = None,
    ) -> Decision:
        return Decision(run=dict.fromkeys(wanted, 0))

    async def released(self, task: TaskKey) -> None:
        return None

    def running_tasks(self) -> set[TaskKey]:
        return set()  # no fleet: the fleet's metrics are not exported alone

    def paused_routes(self) -> set[str]:
        return set()

    def covered(self, task: TaskKey) -> bool:
        return False  # no standby without a fleet

    async def reconfigured(self, fingerprint: str) -> None:
        return None

    async def leave(self) -> None:
        return None
