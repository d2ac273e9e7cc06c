"""One fleet bench run (issue 18): simulated members on real ZooKeeper, through its
phases, each bounded by ``phase_timeout`` (a phase that times out is noted, and the
run goes on where it still means something, or ends: it never hangs).

1. start: the controller first, in a process of its own, wanting nothing until it is
   elected; then, together, the victim (a process of its own) and the other members
   (this process, or ``workers`` processes; their starts spread over ``stagger`` s).
   Cold (the default): the controller is given the work at once, as in a fleet
   started together, where the first members up own everything first; warm: once
   every member has registered, as after a controller failover;
2. settle: until every task is run by a member (their ``Decision.run``), then until
   no task has changed owner for ``quiet`` s (the first owners hand work over as
   members join); then the tree is walked (the largest znode after the
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

from redis_forwarder.bench.fleet_hosts import Hosts
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
    loads,
    moves,
    rate,
    refused_lengths,
)
from redis_forwarder.bench.fleet_observe import Observer, Walk
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
    workers: int = 0  # processes for the members (0: this one)
    warm: bool = False  # the controller gets the work once every member has registered


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


# Below this many cycles a second per member, the bench's host (its CPU) is what limits
# the simulated fleet: what waits on members' cycles is measured pessimistic.
SLOW_CYCLES = 0.8


class FleetRun:
    def __init__(
        self, options: FleetOptions, target: ZooKeeperTarget, report: Report, logs: Path
    ) -> None:
        self.options = o = options
        self.shape = shape = options.shape
        self.target = target
        self._report = report
        self.root = f"/redis-forwarder-fleet-{secrets.token_hex(4)}"
        self.result = FleetResult(shape, o.session_timeout, target.hosts, self.root)
        self.result.start = "warm" if o.warm else "cold"
        self.view = FleetView()
        self.work = FleetWork.of(shape)
        config = CoordinationConfig(
            zookeeper=target.hosts, root=self.root, session_timeout=o.session_timeout
        )
        host = MemberHost(config, self.work, self.view)
        self.hosts = Hosts(shape, config, host, self.view, logs, o.log_level)
        self.logs = logs
        self.ids = shape.node_ids()
        self.controller_id, self.victim_id = self.ids[0], self.ids[1]
        self.observer: Observer | None = None
        self.settled_at: float | None = None

    # ---------------------------------------------------------------- helpers
    def report(self, text: str) -> None:
        """A phase's progress, on the status line and in the log at INFO (with
        ``--log-level info``, the members' lines can be put against the phases')."""
        log.info("fleet bench: %s", text)
        self._report(text)

    def note(self, text: str) -> None:
        log.warning("fleet bench: %s", text)
        self.result.notes.append(text)

    def complete(self) -> bool:
        return self.work.wanted <= self.view.owners().keys()

    def quiet(self) -> bool:
        return self.complete() and time.monotonic() - self.view.changed_at >= self.options.quiet

    async def owners_of(self, tasks: list[TaskKey]) -> dict[TaskKey, str | None]:
        return await asyncio.to_thread(self._observer().owners_of, tasks)

    async def owned_elsewhere(
        self, tasks: list[TaskKey], gone: str, timeout: float, since: float
    ) -> float:
        """Seconds from ``since`` (wall clock) until every task of ``tasks`` had an owner
        znode naming another node than ``gone``: when the last of them was made, by
        ZooKeeper's clock on this host. Polled until then, only those not yet owned
        elsewhere (an owner znode, once made, stays until the next phase). Timed by the
        polls, reading all 2,000 of a dead node's tasks each time while ZooKeeper was
        busy with the takeover, the measure ran 1 to 2 s behind the last owner znode at
        10 nodes and 20,000 tasks."""
        started = time.monotonic()
        pending, made = list(tasks), since
        while True:
            claims = await asyncio.to_thread(self._observer().claims_of, pending)
            owned = {t: at for t, (node, at) in claims.items() if node not in (None, gone)}
            made = max([made, *owned.values()])
            pending = [task for task in pending if task not in owned]
            if not pending:
                return round(made - since, 3)
            if time.monotonic() - started > timeout:
                raise PhaseTimeout(f"{len(pending)} of {len(tasks)} tasks not owned elsewhere")
            await asyncio.sleep(POLL)

    def _observer(self) -> Observer:
        assert self.observer is not None
        return self.observer

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
    async def run(self) -> FleetResult:
        began = time.monotonic()
        self.observer = await asyncio.to_thread(Observer, self.target.hosts, self.root)
        try:
            await self._phases()
        finally:
            self.result.duration_s = time.monotonic() - began
            await self._stop()
        return self.result

    async def _phases(self) -> None:
        if not await self._start():
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
            except (PhaseTimeout, TimeoutError) as exc:
                self.note(f"{name}: {exc}")
        await self.walk("at the end")

    async def _start(self) -> bool:
        o, shape, hosts = self.options, self.shape, self.hosts
        self.report(f"starting the controller ({self.controller_id}) in a process of its own")
        await hosts.worker([self.controller_id], self.controller_id, start_empty=True)
        try:
            await until(
                lambda: self.view.controllers() == [self.controller_id],
                o.phase_timeout,
                "the controller elected",
            )
        except PhaseTimeout as exc:
            self.note(str(exc))
            return False
        where = f"{o.workers} processes" if o.workers > 0 else "this process"
        self.report(f"starting {shape.nodes - 1} members ({where}); {shape.tasks} tasks")
        started = time.monotonic()
        await hosts.worker([self.victim_id], self.victim_id)
        await hosts.members(self.ids[2:], o.workers, o.stagger)
        if o.warm:
            try:
                await until(lambda: len(self.view.roles) >= shape.nodes, o.phase_timeout, "start")
            except PhaseTimeout as exc:
                self.note(f"warm start: {len(self.view.roles)} members registered; {exc}")
            started = time.monotonic()
        await hosts.send(self.controller_id, {"work": True})
        try:
            self.result.settle_s = await until(self.complete, o.phase_timeout, "settle")
        except PhaseTimeout as exc:
            owned = len(self.view.owners().keys() & self.work.wanted)
            self.note(f"initial assignment: {owned} of {shape.tasks} tasks owned; {exc}")
        if self.result.settle_s is not None:
            # Steady means settled too: the first owners hand work over as members join.
            try:
                await until(self.quiet, o.phase_timeout, "ownership quiet after settling")
                self.result.owners_quiet_s = self.view.changed_at - started
            except PhaseTimeout as exc:
                self.note(str(exc))
        self.settled_at = time.monotonic()
        samples = self.view.samples(started, self.settled_at, role="controller")
        self.result.controller_cycle_settling = Spread.of(samples)
        if failed := hosts.host.failed():
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
        cpu, zk_cpu = self.hosts.cpu_seconds(), target.server_cpu_seconds()
        began, changed = time.monotonic(), self.view.changed_at
        await asyncio.sleep(o.steady_seconds)
        after = await asyncio.to_thread(target.mntr)
        ended = time.monotonic()
        seconds = r.steady_window_s = ended - began
        r.bench_cpu_cores = (self.hosts.cpu_seconds() - cpu) / seconds
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
        self._cycles(self.settled_at or began, began, ended)
        load = loads(self.view.owners())
        counts = [load.get(node, 0) for node in self.view.roles]
        r.load_min, r.load_max = (min(counts), max(counts)) if counts else (None, None)
        share = len(self.work.wanted) / max(1, len(counts))
        if r.load_max is not None and r.load_max > 2 * share + 1:
            self.note(f"unbalanced in the steady window: a member runs {r.load_max} tasks, "
                      f"a fair share is {share:.0f}")  # fmt: skip
        if self.view.changed_at != changed:
            self.note("ownership still changed during the steady window")

    def _cycles(self, since: float, began: float, ended: float) -> None:
        """Cycle times: the controller's since the fleet settled, every member's over
        the window; cycles that lost the connection counted apart."""
        r, view = self.result, self.view
        r.controller_cycle = Spread.of(view.samples(since, ended, role="controller"))
        failed = view.samples(since, ended, role="controller", connected=False)
        r.controller_cycles_disconnected = len(failed)
        if failed:
            self.note(f"{len(failed)} controller cycles lost the connection to ZooKeeper")
        members = view.samples(began, ended)
        r.member_cycle = Spread.of(members)
        r.member_cycles_disconnected = len(view.samples(began, ended, connected=False))
        every = len(members) + r.member_cycles_disconnected
        r.member_cycles_per_s = every / (ended - began) / max(1, len(view.roles))
        if r.member_cycles_per_s < SLOW_CYCLES:
            self.note(
                f"members cycled {r.member_cycles_per_s:.2f} times a second, not about once: "
                "this host's CPU limits the simulated fleet, and what waits on members' "
                "cycles is measured pessimistic"
            )

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
        killed = time.time()
        self.hosts.kill(victim)
        limit = o.session_timeout + o.phase_timeout
        r.takeover_s = await self.owned_elsewhere(tasks, victim, limit, killed)
        await until(self.complete, o.phase_timeout, "every task owned after the death")

    async def _topology_change(self) -> None:
        shard = self.shape.new_shard()
        tasks = self.work.tasks_of_shard(shard)
        self.report(f"adding a shard ({len(tasks)} tasks)")
        started = time.time()
        await self.hosts.add_shard(shard)
        owned = await self.owned_elsewhere(tasks, "", self.options.phase_timeout, started)
        self.result.topology_change_s = owned

    async def _join(self) -> None:
        o, joiner = self.options, self.shape.joiner
        await until(self.quiet, o.phase_timeout, "quiet before the join")
        before = self.view.owners()
        self.report(f"{joiner} joins; waiting for ownership to be quiet for {o.quiet:.0f}s")
        started = time.monotonic()
        self.hosts.host.add(joiner)
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
        await self.hosts.leave(leaver, o.phase_timeout)
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
        killed = time.time()
        self.hosts.kill(dead)
        limit = o.session_timeout + o.phase_timeout
        took = await until(lambda: bool(self.view.controllers()), limit, "a new controller")
        if tasks:
            took = await self.owned_elsewhere(tasks, dead, limit, killed)
        self.result.controller_takeover_s = took

    async def _stop(self) -> None:
        self.report("stopping the members")
        await self.hosts.stop()
        if self.target.log is not None:
            lengths = refused_lengths(self.target.log.read_text(errors="replace"))
            self.result.refused_requests = len(lengths)
            self.result.refused_largest_bytes = max(lengths, default=0)
            if lengths:
                self.note(
                    f"ZooKeeper refused {len(lengths)} requests over jute.maxbuffer (1 MiB), "
                    f"the largest {max(lengths):,} bytes, closing the connection each time"
                )
        for node, error in sorted(self.view.errors.items())[:3]:
            self.note(f"{node}: a cycle failed: {error}")
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            if "Traceback" in text:
                last = text.strip().splitlines()[-1]
                self.note(f"{path.stem} (a process of its own) logged an error: {last}")
        if self.observer is not None:
            if self.target.server is None:  # not our own ZooKeeper: leave it clean
                self.report(f"deleting {self.root}")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.observer.delete_root)
            await asyncio.to_thread(self.observer.close)


async def run_fleet(
    options: FleetOptions, target: ZooKeeperTarget, report: Report, logs: Path | None = None
) -> FleetResult:
    """One run; the logs of the members in processes of their own go to ``logs`` (kept)
    or to a temporary directory."""
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        return await FleetRun(options, target, report, logs).run()
    with tempfile.TemporaryDirectory(prefix="redis-forwarder-fleet-logs-") as temporary:
        return await FleetRun(options, target, report, Path(temporary)).run()
