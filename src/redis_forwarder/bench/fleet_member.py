"""Simulated fleet members (issue 18): the real ``ZooKeeperCoordinator``, one real
ZooKeeper session each, driven as ``Node`` drives it, without Redis.

A member's loop is ``Node.run``'s: a cycle, then a wait of up to ``node.CYCLE`` that
a watch or a state change (``on_change``) cuts short; no debounce beyond that, as in
the node. After each cycle it does what the node does with the ``Decision``: stops
what it may no longer run (and ``released`` each, as ``Node._reconcile`` does), keeps
the tasks it stands by for, and reports progress as a node would (per task epoch,
state and counters that move every cycle; ``silent_for``; ``standing_by``), so the
progress znodes are the size a real fleet's are. A graceful stop releases every task,
then ``leave`` (``Node.run``'s ``finally``).

``FleetView`` is what the bench knows of the fleet from the members' own reports:
each member's tasks (``Decision.run``), its role, and every cycle's duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.bench.fleet_model import FleetWork, task_name
from redis_forwarder.config import CoordinationConfig, NodeConfig
from redis_forwarder.coordination.coordinator import ZooKeeperCoordinator
from redis_forwarder.coordination.decision import Decision
from redis_forwarder.coordination.paths import SILENCE, STANDING_BY
from redis_forwarder.eventloop import first_of
from redis_forwarder.model import TaskKey
from redis_forwarder.node import CYCLE

log = logging.getLogger(__name__)
FINGERPRINT = "fleet-bench"  # every member runs "the same config"
SOURCE = "source"


@dataclass(frozen=True)
class CycleSample:
    node: str
    role: str
    at: float  # when the cycle started (time.monotonic: one clock for the whole host)
    seconds: float
    # The session connected when the cycle started and when it ended: a cycle that
    # failed on a connection loss (or ran suspended) returns at once and is no measure
    # of a cycle's work.
    connected: bool = True


@dataclass
class FleetView:
    """The fleet as its members report it: who runs what, who leads, cycle times."""

    runs: dict[str, frozenset[TaskKey]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    cycles: list[CycleSample] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # node -> its last cycle error
    changed_at: float = field(default_factory=time.monotonic)  # the owners' last change

    def ran(self, node: str, tasks: frozenset[TaskKey]) -> None:
        if self.runs.get(node) != tasks:
            self.runs[node] = tasks
            self.changed_at = time.monotonic()

    def cycled(self, sample: CycleSample) -> None:
        self.cycles.append(sample)
        self.roles[sample.node] = sample.role

    def gone(self, node: str) -> None:
        """A member killed or left: what it ran is no longer run."""
        if self.runs.pop(node, None):
            self.changed_at = time.monotonic()
        self.roles.pop(node, None)

    def owners(self) -> dict[TaskKey, str]:
        return {task: node for node, tasks in self.runs.items() for task in tasks}

    def controllers(self) -> list[str]:
        return sorted(node for node, role in self.roles.items() if role == "controller")

    def samples(
        self, since: float, until: float, *, role: str | None = None, connected: bool = True
    ) -> list[float]:
        """The durations of the cycles started in [since, until) (of ``role``'s), those
        connected throughout (or, ``connected=False``, the others)."""
        return [
            c.seconds
            for c in self.cycles
            if since <= c.at < until
            and (role is None or c.role == role)
            and c.connected is connected
        ]


class SimulatedMember:
    def __init__(
        self,
        node_id: str,
        config: CoordinationConfig,
        work: FleetWork,
        view: FleetView,
        on_cycle: Callable[[SimulatedMember], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.work = work
        self.view = view
        self.on_cycle = on_cycle
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._graceful = False
        cut_off_after = config.session_timeout + 2 * NodeConfig().topology_interval
        self.coordinator = ZooKeeperCoordinator(
            config, node_id, FINGERPRINT, None, self._wake.set, cut_off_after
        )
        self.running: dict[TaskKey, int] = {}  # task -> epoch: what it may run now
        self.held: set[TaskKey] = set()  # pub/sub tasks kept through a lost session
        self.standing_by: set[TaskKey] = set()
        self._random = random.Random(node_id)
        self._counters: dict[TaskKey, tuple[int, float, float]] = {}  # forwarded, rate, at

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, graceful: bool) -> None:
        self._graceful = graceful
        self._stop.set()

    async def run(self, delay: float = 0.0) -> None:
        """Start after ``delay`` (the fleet's starts are staggered), cycle until
        stopped, then leave gracefully or just close the session."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()
        if self._stop.is_set():
            return
        await self.coordinator.start()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                await self._guarded_cycle()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CYCLE):
                        await first_of(self._stop.wait(), self._wake.wait())
        finally:
            await self._finish()

    async def _finish(self) -> None:
        if self._graceful:  # Node.run's finally: stop the tasks, release them, leave
            for task in sorted(self.running.keys() | self.held):
                await self.coordinator.released(task)
            self.running.clear()
            self.held.clear()
            await self.coordinator.leave()
        else:
            await self.coordinator.session.close()
        self.view.gone(self.node_id)

    async def _guarded_cycle(self) -> None:
        """``Node._guarded_cycle``: an error is logged and the next cycle runs."""
        try:
            await self._cycle()
        except Exception as exc:  # the node's rule: one bad cycle does not end it
            self.view.errors[self.node_id] = f"{type(exc).__name__}: {exc}"
            log.exception("%s: cycle failed", self.node_id)

    async def _cycle(self) -> None:
        progress = self._progress()
        coordinator = self.coordinator
        connected = coordinator.session_state == "connected"
        started = time.monotonic()
        # The fleet's sets as they are (frozen): a copy of 20,000 tasks per member per
        # cycle was the bench's own cost, not a node's.
        decision = await coordinator.cycle(
            self.work.wanted, progress, None, self.work.wants_standby
        )
        seconds = time.monotonic() - started
        connected = connected and coordinator.session_state == "connected"
        await self._apply(decision)
        self.view.cycled(CycleSample(self.node_id, coordinator.role, started, seconds, connected))
        self.view.ran(self.node_id, frozenset(self.running))
        if self.on_cycle is not None:
            self.on_cycle(self)

    async def _apply(self, decision: Decision) -> None:
        """What ``Node._reconcile`` does with a decision, tasks being names only."""
        held: set[TaskKey] = decision.held & (self.running.keys() | self.held)
        if decision.drop_all:  # ``_hold_or_drop``: pub/sub tasks held, the rest stop
            held |= {t for t in self.running.keys() | self.held if t in self.work.wants_standby}
        stopped = ((self.running.keys() | self.held) - decision.run.keys() - held) | (
            decision.release
        )
        # All at once, as ``Node._reconcile`` lets go of them.
        await asyncio.gather(*(self.coordinator.released(task) for task in sorted(stopped)))
        self.held = held - decision.run.keys()
        self.running = dict(decision.run)
        self.standing_by = set(decision.stand_by) - self.running.keys()

    def _progress(self) -> dict[str, Any]:
        """Like ``ProgressReport.of`` plus ``silent_for`` and ``standing_by``: counters
        that change every cycle, as a forwarding node's do."""
        now, wall = time.monotonic(), time.time()
        progress: dict[str, Any] = {}
        counters: dict[TaskKey, tuple[int, float, float]] = {}
        for task, epoch in sorted(self.running.items()):
            forwarded, speed, then = self._counters.get(
                task, (0, self._random.uniform(50, 500), now)
            )
            moved = int(speed * (now - then) * self._random.uniform(0.8, 1.2))
            counters[task] = (forwarded + moved, speed, now)
            progress[task_name(task)] = {
                "epoch": epoch,
                "running": True,
                "state": "forwarding",
                "refused_by_sink": False,
                "forwarded": forwarded + moved,
                "rate": round(moved / (now - then), 1) if now > then else 0.0,
                "lag": 0.0,
                "last_message_at": wall - self._random.uniform(0, 0.05),
                "gaps": 0,
                "replayed": 0,
                "ambiguous": 0,
                "unaccounted_seconds": 0.0,
            }
        self._counters = counters
        progress[SILENCE] = {SOURCE: round(self._random.uniform(0.0, 0.3), 2)}
        progress[STANDING_BY] = {
            task_name(task): {
                "state": "standby",
                "source": "10.0.0.1:6379",
                "ring_seconds": round(self._random.uniform(20, 23), 2),
                "ring_messages": self._random.randint(1000, 20000),
                "ring_bytes": self._random.randint(100_000, 2_000_000),
                "evicted": 0,
            }
            for task in sorted(self.standing_by)
        }
        return progress


class MemberHost:
    """The members run by one process, sharing one ``FleetWork``."""

    def __init__(
        self,
        config: CoordinationConfig,
        work: FleetWork,
        view: FleetView,
        on_cycle: Callable[[SimulatedMember], None] | None = None,
    ) -> None:
        self.config = config
        self.work = work
        self.view = view
        self.on_cycle = on_cycle
        self.members: dict[str, SimulatedMember] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}

    def add_all(self, node_ids: list[str], stagger: float) -> None:
        """Start these members, their starts spread evenly over ``stagger`` s."""
        for index, node_id in enumerate(node_ids):
            self.add(node_id, delay=stagger * index / len(node_ids))

    def add(self, node_id: str, delay: float = 0.0) -> SimulatedMember:
        member = SimulatedMember(node_id, self.config, self.work, self.view, self.on_cycle)
        self.members[node_id] = member
        self._runs[node_id] = asyncio.create_task(member.run(delay), name=node_id)
        return member

    def add_shard(self, shard: str) -> None:
        """A topology change every member sees at once (as their topology watchers
        would, each waking its node)."""
        self.work.add_shard(shard)
        self._wake_all()

    def set_shards(self, shards: list[str]) -> None:
        self.work.set_shards(shards)
        self._wake_all()

    def _wake_all(self) -> None:
        for member in self.members.values():
            member.wake()

    async def leave(self, node_id: str, timeout: float) -> None:
        """Stop one member gracefully (its tasks released, then ``leave``)."""
        member = self.members.pop(node_id)
        member.stop(graceful=True)
        run = self._runs.pop(node_id)
        async with asyncio.timeout(timeout):
            await run

    async def close(self, timeout: float = 30.0) -> None:
        """Stop every member, closing its session (its ephemeral znodes go at once)."""
        for member in self.members.values():
            member.stop(graceful=False)
        runs = list(self._runs.values())
        if runs:
            _done, pending = await asyncio.wait(runs, timeout=timeout)
            for run in pending:
                run.cancel()
        self.members.clear()
        self._runs.clear()

    def failed(self) -> dict[str, str]:
        """Members whose loop ended with an error (``start`` could not connect)."""
        return {
            name: f"{type(exc).__name__}: {exc}"
            for name, run in self._runs.items()
            if run.done() and not run.cancelled() and (exc := run.exception()) is not None
        }
