"""One fleet bench run (issue 18): simulated members on real ZooKeeper, through its
phases, each bounded by ``phase_timeout`` (a phase that times out is noted, and the
run goes on where it still means something, or ends: it never hangs).

1. start: the controller first, in a process of its own, wanting nothing until it is
   elected (else, alone, it would own every task first); then, together, the other
   members (this process, starts staggered over ``stagger`` s) and the victim (a
   process of its own), and the controller is given the work;
2. settle: until every task is run by a member (their ``Decision.run``), then until
   no task has changed owner for ``quiet`` s (balanced: the first owners hand work
   over as members join); then the tree is walked (the largest znode after the
   initial assignment);
3. steady state: ``steady_seconds`` of ``mntr`` deltas, cycle times and CPU;
4. death: the victim SIGKILLed; until every task it ran has an owner znode held by
   another node;
5. topology change: a shard added to every member's tasks at once; until its tasks
   have owner znodes;
6. join, then a graceful leave: the tasks whose owner changed, once ownership has
   been quiet for ``quiet`` s;
7. the controller SIGKILLed: until another member leads and its tasks are owned;
8. the tree walked again; everything stopped (the root deleted on a ZooKeeper that
   is not the bench's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis_forwarder.bench.fleet_member import FleetView, MemberHost
from redis_forwarder.bench.fleet_model import (
    BYTES_IN,
    BYTES_OUT,
    CONNECTIONS,
    REQUESTS,
    WATCHES,
    FleetResult,
    FleetShape,
    FleetWork,
    Spread,
    moves,
    rate,
)
from redis_forwarder.bench.fleet_observe import Observer, Walk
from redis_forwarder.bench.fleet_worker import WorkerProcess, WorkerSpec
from redis_forwarder.bench.fleet_zookeeper import ZooKeeperTarget
from redis_forwarder.config import CoordinationConfig
from redis_forwarder.model import TaskKey

log = logging.getLogger(__name__)
POLL = 0.1
Report = Callable[[str], None]


@dataclass(frozen=True)
class FleetOptions:
    shape: FleetShape
    session_timeout: float = 6.0
    steady_seconds: float = 10.0
    phase_timeout: float = 120.0
    stagger: float = 1.0
    quiet: float = 4.0
    log_level: str = "warning"


class PhaseTimeout(Exception):
    pass


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every POLL s; the seconds it took. PhaseTimeout after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise PhaseTimeout(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


class FleetRun:
    def __init__(self, options: FleetOptions, target: ZooKeeperTarget, report: Report) -> None:
        self.options = options
        self.shape = shape = options.shape
        self.target = target
        self.report = report
        self.root = f"/redis-forwarder-fleet-{secrets.token_hex(4)}"
        self.result = FleetResult(shape, options.session_timeout, target.hosts, self.root)
        self.view = FleetView()
        self.work = FleetWork.of(shape)
        config = CoordinationConfig(
            zookeeper=target.hosts, root=self.root, session_timeout=options.session_timeout
        )
        self.host = MemberHost(config, self.work, self.view)
        self.ids = shape.node_ids()
        self.controller_id, self.victim_id = self.ids[0], self.ids[1]
        self.workers: dict[str, WorkerProcess] = {}
        self.observer: Observer | None = None
        self.settled_at: float | None = None

    # ---------------------------------------------------------------- helpers
    def note(self, text: str) -> None:
        log.warning("fleet bench: %s", text)
        self.result.notes.append(text)

    def complete(self) -> bool:
        return self.work.wanted <= self.view.owners().keys()

    def quiet(self) -> bool:
        return self.complete() and time.monotonic() - self.view.changed_at >= self.options.quiet

    async def owners_of(self, tasks: list[TaskKey]) -> dict[TaskKey, str | None]:
        assert self.observer is not None
        return await asyncio.to_thread(self.observer.owners_of, tasks)

    async def owned_elsewhere(self, tasks: list[TaskKey], gone: str, timeout: float) -> float:
        """Seconds until every task of ``tasks`` has an owner znode naming another node
        than ``gone``."""
        started = time.monotonic()
        while True:
            owners = await self.owners_of(tasks)
            if all(node not in (None, gone) for node in owners.values()):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                left = sum(1 for node in owners.values() if node in (None, gone))
                raise PhaseTimeout(f"{left} of {len(tasks)} tasks not owned elsewhere")
            await asyncio.sleep(POLL)

    async def worker(self, node_id: str, logs: Path, *, start_empty: bool) -> WorkerProcess:
        o = self.options
        spec = WorkerSpec(
            self.target.hosts, self.root, o.session_timeout, self.shape.nodes,
            self.shape.tasks, self.shape.routes, self.shape.standby_routes, (node_id,),
            start_empty, o.log_level,
        )  # fmt: skip
        worker = await WorkerProcess.start(spec, self.view, logs / f"{node_id}.log")
        self.workers[node_id] = worker
        return worker

    async def walk(self, when: str) -> Walk:
        assert self.observer is not None
        self.report(f"walking the tree under {self.root} ({when})")
        walk = await asyncio.to_thread(self.observer.walk)
        r = self.result
        if r.largest_znode_bytes is None or walk.largest_bytes > r.largest_znode_bytes:
            r.largest_znode_bytes, r.largest_znode_path = walk.largest_bytes, walk.largest_path
            r.largest_znode_when = when
        r.znodes = walk.znodes
        return walk

    # ---------------------------------------------------------------- phases
    async def run(self, logs: Path) -> FleetResult:
        began = time.monotonic()
        self.observer = await asyncio.to_thread(Observer, self.target.hosts, self.root)
        try:
            await self._phases(logs)
        finally:
            self.result.duration_s = time.monotonic() - began
            await self._stop(logs)
        return self.result

    async def _phases(self, logs: Path) -> None:
        if not await self._start(logs):
            return
        await self._steady()
        steps = (
            ("death", self._death),
            ("topology change", self._topology_change),
            ("join", self._join),
            ("leave", self._leave),
            ("controller death", self._controller_death),
        )
        for name, step in steps:
            try:
                await step()
            except PhaseTimeout as exc:
                self.note(f"{name}: {exc}")
        await self.walk("at the end")

    async def _start(self, logs: Path) -> bool:
        o, shape = self.options, self.shape
        self.report(f"starting the controller ({self.controller_id}) in a process of its own")
        controller = await self.worker(self.controller_id, logs, start_empty=True)
        try:
            await until(
                lambda: self.view.controllers() == [self.controller_id],
                o.phase_timeout,
                "the controller elected",
            )
        except PhaseTimeout as exc:
            self.note(str(exc))
            return False
        self.report(f"starting {shape.nodes - 1} members; {shape.tasks} tasks to own")
        started = time.monotonic()
        await self.worker(self.victim_id, logs, start_empty=False)
        others = self.ids[2:]
        for index, node_id in enumerate(others):
            self.host.add(node_id, delay=o.stagger * index / len(others))
        await controller.send({"work": True})
        try:
            self.result.settle_s = await until(self.complete, o.phase_timeout, "settle")
        except PhaseTimeout as exc:
            owned = len(self.view.owners().keys() & self.work.wanted)
            self.note(f"initial assignment: {owned} of {shape.tasks} tasks owned; {exc}")
        if self.result.settle_s is not None:
            # Steady means balanced too: the first owners hand work over as members join.
            try:
                await until(self.quiet, o.phase_timeout, "ownership quiet after settling")
                self.result.balanced_s = self.view.changed_at - started
            except PhaseTimeout as exc:
                self.note(str(exc))
        self.settled_at = time.monotonic()
        samples = self.view.samples(started, self.settled_at, role="controller")
        self.result.controller_cycle_settling = Spread.of(samples)
        if failed := self.host.failed():
            self.note(f"{len(failed)} members failed to start: {next(iter(failed.values()))}")
        walk = await self.walk("after the initial assignment")
        self.result.owned_after_settle = walk.children.get("owners", 0)
        if self.result.settle_s is None:
            await self._steady()  # what a fleet that cannot settle costs ZooKeeper
            return False
        return True

    async def _steady(self) -> None:
        o, r, target = self.options, self.result, self.target
        self.report(f"steady state: measuring for {o.steady_seconds:.0f}s")
        await asyncio.sleep(1.0)  # the walk's answers drained
        before = await asyncio.to_thread(target.mntr)
        cpu, zk_cpu, began = time.process_time(), target.server_cpu_seconds(), time.monotonic()
        changed = self.view.changed_at
        await asyncio.sleep(o.steady_seconds)
        after = await asyncio.to_thread(target.mntr)
        ended = time.monotonic()
        seconds = r.steady_window_s = ended - began
        r.bench_cpu_cores = (time.process_time() - cpu) / seconds
        r.bench_threads = threading.active_count()
        zk_now = target.server_cpu_seconds()
        if zk_cpu is not None and zk_now is not None:
            r.zookeeper_cpu_cores = (zk_now - zk_cpu) / seconds
        if before is None or after is None:
            self.note("ZooKeeper did not answer mntr (not whitelisted?): no request rates")
        else:
            r.requests_per_s = rate(before, after, REQUESTS, seconds)
            r.bytes_per_s = rate(before, after, BYTES_IN, seconds)
            r.response_bytes_per_s = rate(before, after, BYTES_OUT, seconds)
            r.watches = int(after[WATCHES]) if WATCHES in after else None
            r.connections = int(after[CONNECTIONS]) if CONNECTIONS in after else None
        since = self.settled_at or began
        r.controller_cycle = Spread.of(self.view.samples(since, ended, role="controller"))
        members = self.view.samples(began, ended)
        r.member_cycle = Spread.of(members)
        r.member_cycles_per_s = len(members) / seconds / max(1, len(self.view.roles))
        if self.view.changed_at != changed:
            self.note("ownership still changed during the steady window")

    async def _death(self) -> None:
        o, r = self.options, self.result
        victim = self.victim_id
        tasks = sorted(self.view.runs.get(victim, ()))
        r.victim, r.victim_tasks = victim, len(tasks)
        if not tasks:
            raise PhaseTimeout(f"the victim {victim} runs no task: no death to time")
        if self.view.roles.get(victim) == "controller":
            raise PhaseTimeout(f"the victim {victim} is the controller: not a member's death")
        held = await self.owners_of(tasks)
        if any(node != victim for node in held.values()):
            self.note(f"{victim}'s owner znodes before the kill: not all its own")
        self.report(f"SIGKILL {victim} ({len(tasks)} tasks); waiting for their new owners")
        self.workers[victim].kill()
        r.takeover_s = await self.owned_elsewhere(
            tasks, victim, o.session_timeout + o.phase_timeout
        )
        await until(self.complete, o.phase_timeout, "every task owned after the death")

    async def _topology_change(self) -> None:
        shard = self.shape.new_shard()
        tasks = self.work.tasks_of_shard(shard)
        self.report(f"adding a shard ({len(tasks)} tasks)")
        started = time.monotonic()
        self.host.add_shard(shard)
        await self.workers[self.controller_id].send({"add_shard": shard})
        await self.owned_elsewhere(tasks, "", self.options.phase_timeout)
        self.result.topology_change_s = time.monotonic() - started

    async def _join(self) -> None:
        o, joiner = self.options, self.shape.joiner
        await until(self.quiet, o.phase_timeout, "quiet before the join")
        before = self.view.owners()
        self.report(f"{joiner} joins; waiting for ownership to be quiet for {o.quiet:.0f}s")
        started = time.monotonic()
        self.host.add(joiner)
        await until(
            lambda: self.view.changed_at > started and self.quiet(), o.phase_timeout, "join"
        )
        self.result.join_s = self.view.changed_at - started
        self.result.join_moves = moves(before, self.view.owners())

    async def _leave(self) -> None:
        o, leaver = self.options, self.ids[2]
        await until(self.quiet, o.phase_timeout, "quiet before the leave")
        before = self.view.owners()
        self.report(f"{leaver} leaves gracefully; waiting for ownership to be quiet")
        started = time.monotonic()
        await self.host.leave(leaver, o.phase_timeout)
        await until(
            lambda: self.view.changed_at > started and self.quiet(), o.phase_timeout, "leave"
        )
        self.result.leave_s = self.view.changed_at - started
        self.result.leave_moves = moves(before, self.view.owners())

    async def _controller_death(self) -> None:
        o, dead = self.options, self.controller_id
        if self.view.controllers() != [dead]:
            raise PhaseTimeout(f"{dead} no longer leads: {self.view.controllers()}")
        tasks = sorted(self.view.runs.get(dead, ()))
        self.report(f"SIGKILL the controller {dead} ({len(tasks)} tasks)")
        started = time.monotonic()
        self.workers[dead].kill()
        limit = o.session_timeout + o.phase_timeout
        await until(lambda: bool(self.view.controllers()), limit, "a new controller")
        if tasks:
            await self.owned_elsewhere(tasks, dead, limit)
        self.result.controller_takeover_s = time.monotonic() - started

    async def _stop(self, logs: Path) -> None:
        self.report("stopping the members")
        await self.host.close()
        for worker in self.workers.values():
            await worker.stop()
        for node, error in sorted(self.view.errors.items())[:3]:
            self.note(f"{node}: a cycle failed: {error}")
        for path in sorted(logs.glob("*.log")):
            text = path.read_text(errors="replace")
            if "Traceback" in text:
                self.note(f"{path.stem} (a process of its own) logged an error: "
                          f"{text.strip().splitlines()[-1]}")  # fmt: skip
        if self.observer is not None:
            if self.target.server is None:  # not our own ZooKeeper: leave it clean
                self.report(f"deleting {self.root}")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.observer.delete_root)
            await asyncio.to_thread(self.observer.close)


async def run_fleet(options: FleetOptions, target: ZooKeeperTarget, report: Report) -> FleetResult:
    with tempfile.TemporaryDirectory(prefix="redis-forwarder-fleet-logs-") as logs:
        return await FleetRun(options, target, report).run(Path(logs))
