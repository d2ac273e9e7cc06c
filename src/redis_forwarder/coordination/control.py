"""The controller's step of a coordination cycle, run by the node whose contender is
first in the controller queue: read who may run tasks (members running the
controller's config, not drained, not cut off from Redis: ``fleet_reads``) and the
assignment in force, compute owners and standbys (``assignment.plan``) when any of
that changed since the last plan, and write what changed: the parts that changed
(layout 2, ``parts_store``), or the whole document while a member of an older release
reads only that (layout 1, ``legacy``).

Apart from ``coordinator`` so that each stays one job under the size limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.coordination import legacy, parts
from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.assignment import Assignment, cut_off, moves, reaching
from redis_forwarder.coordination.fleet_reads import (
    Derived,
    Members,
    Memo,
    Reports,
    read_members,
    read_reports,
)
from redis_forwarder.coordination.parts import Ran
from redis_forwarder.coordination.parts_store import PartsStore
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.reborn import gone_owners, ran_now
from redis_forwarder.coordination.requests import Operation
from redis_forwarder.coordination.standby_wait import StandbyWait
from redis_forwarder.coordination.together import plan_together
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import Znode, ZooKeeperSession
from redis_forwarder.model import TaskKey

log = logging.getLogger(__name__)
# Seconds a node that yielded a task is not taken as a ready standby (``doubted``): its
# other subscriptions' heartbeats notice a cut within two PING intervals, and its next
# report says so.
DOUBT = 5.0
# Seconds past a yield's first report after which a report of its standby still saying
# standing by is believed (``confirmed``): ``forwarding.yielding.confirm_after`` of its
# route's heartbeat, which the node passes per route; this at the default heartbeat.
YIELD_CONFIRM = 2.0
Yields = tuple[frozenset[str], frozenset[TaskKey]]  # doubted nodes, yields confirmed by time


@dataclass(frozen=True)
class InForce:
    """The assignment as the controller read it (either layout)."""

    owners: Assignment
    standbys: Assignment
    serial: int
    shard_names: dict[str, Any] | None
    version: int | None  # layout 1: the document's (None: none yet); 2: the parts'
    # task -> (node, session, epoch) it last ran under, as written (``reborn.py``)
    ran: dict[TaskKey, tuple[str, int, int]] = field(default_factory=dict)
    layout: int = 1
    marker_exists: bool = False  # {root}/assignment is there (either layout)
    marker_version: int = -1  # its version, when it is


@dataclass
class Control:
    session: ZooKeeperSession
    paths: Paths
    node_id: str
    cut_off_after: float  # seconds of silence from Redis: see ``assignment.cut_off``
    waiting: StandbyWait  # tasks whose standby is not back yet wait for it (a while)
    reads: WatchedReads  # the coordinator's: read again only what changed
    store: PartsStore = field(init=False)
    _memo: Memo = field(default_factory=dict)
    _derived: Derived = field(default_factory=dict)
    # What the last plan was made of: the same again plans nothing (issue 18: at 20,000
    # tasks a plan is most of a controller's cycle).
    _last_inputs: tuple[Any, ...] | None = None
    paused: set[str] = field(default_factory=set)  # the routes paused, as last read
    # deployment -> when every member was last silent from it (``assignment.cut_off``)
    _calm: dict[str, float] = field(default_factory=dict)
    _doubt: dict[str, float] = field(default_factory=dict)  # node -> until (``doubted``)
    # task -> (its owner, when its yield was first reported, on ZooKeeper's clock)
    _yields: dict[TaskKey, tuple[str, float]] = field(default_factory=dict)
    yield_confirm: Mapping[str, float] = field(default_factory=dict)  # route -> seconds
    _reported_running: Mapping[str, tuple[int, dict[TaskKey, int]]] = field(default_factory=dict)
    # route -> its group: tasks placed on one node (a pub/sub bridge's directions, issue
    # 20), by the controller's config (``coordination/together.py``)
    together: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = PartsStore(self.session, self.paths, self.node_id)

    def running_tasks(self) -> set[TaskKey]:
        """The tasks the members' last reports run (for ``forwarder_fleet_unowned_tasks``;
        any thread: the mapping is replaced whole, never changed)."""
        return {task for _session, runs in self._reported_running.values() for task in runs}

    def forget(self) -> None:
        """A new session, or no longer the controller: read everything again."""
        self.store.forget()
        self._memo.clear()
        self._derived.clear()
        self._last_inputs = None
        self._doubt.clear()  # (another controller may have moved the tasks meanwhile)
        self._yields.clear()

    async def run(
        self,
        fingerprint: str,
        wanted: Set[TaskKey],
        wants_standby: Set[TaskKey],
        shard_names: dict[str, Any] | None,
    ) -> None:
        """One controller step. ``wants_standby``: the tasks of ``wanted`` whose route
        wants a standby (pub/sub routes, by the controller's config)."""
        started = time.monotonic()
        members = await read_members(self.reads, self.paths, fingerprint, self._memo)
        reports = await read_reports(self.reads, self.paths, members, self._memo, self._derived)
        self._reported_running = reports.running
        paused = {znodes.unquote_name(n) for n in await self.reads.children(self.paths.paused)}
        self.paused = paused
        in_force = await self._in_force()
        rebalance = await self.reads.get(self.paths.rebalance)
        yields = self._yield_state(in_force, reports)  # they change with time alone
        inputs = (
            yields,
            members, reports.key(self.cut_off_after, self._calm), paused, in_force.version,
            in_force.layout,
            rebalance is not None, frozenset(wanted), frozenset(wants_standby), shard_names,
            tuple(sorted(self.together.items())),
        )  # fmt: skip
        if inputs == self._last_inputs:
            return
        self._last_inputs = inputs
        read = time.monotonic()
        owners, standbys, ran, held = self._plan(
            members, reports, paused, in_force, rebalance, wanted, wants_standby, yields
        )
        if held:
            self._last_inputs = None  # the wait has a deadline: plan again next cycle
        if rebalance is not None:
            await self.session.delete(self.paths.rebalance)
        planned = time.monotonic()
        written = await self._write(members.layout, in_force, owners, standbys, ran, shard_names)
        if not written:
            self._last_inputs = None
            return
        if (owners, standbys) != (in_force.owners, in_force.standbys):
            took = (read - started, planned - read, time.monotonic() - planned)
            self._log(in_force, owners, standbys, reports, members, took)

    def _plan(
        self,
        members: Members,
        reports: Reports,
        paused: set[str],
        in_force: InForce,
        rebalance: Znode | None,
        wanted: Set[TaskKey],
        wants_standby: Set[TaskKey],
        yields: Yields = (frozenset(), frozenset()),
    ) -> tuple[Assignment, Assignment, Ran, set[TaskKey]]:
        """Owners, standbys, the records of last runs, and the tasks left to wait for
        their standby."""
        cut = cut_off(reports.silences, self.cut_off_after, self._calm)
        eligible = reaching(members.candidates, cut)
        doubt, timely = yields
        ready = {
            t
            for t, node in in_force.standbys.items()
            if node not in doubt and t in reports.standing_by.get(node, ())
        }
        # A rebalance drops stickiness, not the standbys: the tasks go to them first.
        previous = {} if rebalance else in_force.owners
        with_standby = [t for t in wants_standby & wanted if t in in_force.standbys]
        sessions, running = members.sessions, reports.running
        dead = gone_owners(in_force.owners, in_force.ran, sessions, running, with_standby)
        if dead:
            # Its owner is gone even though its node is back: to its standby, as any
            # task of a dead owner (``assignment.promotions``).
            previous = {t: "" if t in dead else n for t, n in previous.items()}
            log.info(
                "%d tasks of a node that died and came back go to their standbys: %s",
                len(dead), _names(dead),
            )  # fmt: skip
        if gave_up := self._yielded(in_force, timely, ready, eligible):
            # Their owner lost the subscription; the ready standby heard what it missed:
            # to the standby, as a gone owner's (``forwarding.yielding``).
            previous = {t: "" if t in gave_up else n for t, n in previous.items()}
            log.info("%d tasks yielded by their owners go to their standbys: %s",
                     len(gave_up), _names(gave_up))  # fmt: skip
        owners, standbys = plan_together(
            wanted, eligible, previous, in_force.standbys, wants_standby, ready, paused,
            self.together,
        )  # fmt: skip
        held = self.waiting.held(
            wants_standby & wanted, previous, in_force.standbys, eligible, time.monotonic()
        )
        for task in held:  # no owner ("": no node's id) until its standby is back
            owners[task], standbys[task] = "", in_force.standbys[task]
        if held:
            log.info("%d tasks wait for their standby to come back: %s", len(held), _names(held))
        # A gone owner's record goes with it: whoever owns the task next may take it.
        last_ran = {task: ran for task, ran in in_force.ran.items() if task not in dead}
        ran = ran_now(owners, last_ran, sessions, running, wants_standby & wanted)
        return owners, standbys, ran, held

    def _yield_state(self, in_force: InForce, reports: Reports) -> Yields:
        """The nodes doubted as standbys now, and the yields whose standby has reported
        since the confirmation time (``doubted``, ``confirmed``)."""
        owners = in_force.owners
        yielded = asked_to_yield(owners, reports)  # (empty at once when nobody yields)
        yielders = {owners[task] for task in yielded}
        doubt = frozenset(doubted(self._doubt, yielders, time.monotonic()))
        if not yielded:  # the common case: nothing to work out at 20,000 tasks
            self._yields.clear()
            return doubt, frozenset()
        written, before = reports.written, self._yields
        self._yields = {
            task: before[task] if before.get(task, ("", 0.0))[0] == owners[task]
            else (owners[task], written.get(owners[task], math.inf))
            for task in yielded
        }  # fmt: skip
        # Only a silence of the server the standby listens on too waits: a subscription
        # closed by the server, or silent on a master whose standby listens on a
        # replica, is not known to be the standby's fault too (and waiting added seconds
        # to a half-open master's failover, whose Sentinel then closed the standby's).
        silent = {task for tasks in reports.silent.values() for task in tasks}
        asked = {task: at for task, (_owner, at) in self._yields.items() if task in silent}
        sure = self._yields.keys() - silent
        return doubt, frozenset(
            sure | confirmed(asked, in_force.standbys, written, self.yield_confirm)
        )

    def _yielded(
        self, in_force: InForce, timely: Set[TaskKey], ready: Set[TaskKey], eligible: list[str]
    ) -> set[TaskKey]:
        if not self._yields:
            return set()
        reachable = set(eligible)
        movable = {t for t in ready if in_force.standbys[t] in reachable}
        return whole_groups(
            set(timely) & movable, in_force.owners, self.together, movable, set(self._yields)
        )

    async def _in_force(self) -> InForce:
        """The assignment as ZooKeeper holds it, in whichever layout it is."""
        marker = await self.reads.get(self.paths.assignment)
        data = marker.data if marker else None
        if parts.layout_of(data) == parts.LAYOUT:
            await self.store.load(self.reads)
            owners, standbys, ran = self.store.in_force()
            return InForce(
                owners, standbys, self.store.serial, znodes.shard_names_of(data),
                self.store.version, dict(ran), parts.LAYOUT, True,
                marker.version if marker else -1,
            )  # fmt: skip
        owners, serial = znodes.assignment_of(data)
        recorded = await self.reads.get(self.paths.ran)
        return InForce(
            owners,
            znodes.standbys_of(data),
            serial,
            znodes.shard_names_of(data),
            marker.version if marker else None,
            znodes.ran_of(recorded.data if recorded else None),
            1,
            marker is not None,
            marker.version if marker else -1,
        )

    async def _write(
        self,
        layout: int,
        in_force: InForce,
        owners: Assignment,
        standbys: Assignment,
        ran: Ran,
        shard_names: dict[str, Any] | None,
    ) -> bool:
        """Write what changed, in the layout every member reads: 2, unless a member of
        an older release is in the fleet (a rolling upgrade: layout 1 until the last one
        is replaced, and back to it should one come back). False when another
        controller wrote first (read again next cycle)."""
        if layout >= parts.LAYOUT:
            await self.store.load(self.reads)  # a switch: what the parts folder holds
            marker = None
            if in_force.layout != parts.LAYOUT or shard_names != in_force.shard_names:
                kind = "set" if in_force.marker_exists else "create"
                marker = Operation(kind, self.paths.assignment, parts.marker(shard_names))
            return await self.store.write(owners, standbys, ran, marker)
        return await legacy.write(
            self.session, self.paths, self.node_id, in_force, owners, standbys, ran, shard_names
        )

    def _log(
        self,
        in_force: InForce,
        owners: Assignment,
        standbys: Assignment,
        reports: Reports,
        members: Members,
        took: tuple[float, float, float],
    ) -> None:
        """The change, and how long its read, plan and write took (at 20,000 tasks, what
        an operator looks at first when a takeover is slow)."""
        cut = cut_off(reports.silences, self.cut_off_after, self._calm)
        moved = moves(in_force.owners, owners)
        passed_over = ", ".join(f"{n} (from {'/'.join(d)})" for n, d in sorted(cut.items()))
        log.info(
            "assignment %d: %d tasks on %d nodes, %d moved (%d to their standby), %d standbys%s "
            "(read %.3fs, plan %.3fs, write %.3fs)",
            in_force.serial + 1,
            len(owners),
            len(reaching(members.candidates, cut)),
            len(moved),
            sum(1 for task in moved if owners[task] == in_force.standbys.get(task)),
            len(standbys),
            f"; none for nodes cut off from Redis: {passed_over}" if passed_over else "",
            *took,
        )


def _names(tasks: set[TaskKey]) -> str:
    shown = sorted(tasks)[:20]
    more = f" and {len(tasks) - len(shown)} more" if len(tasks) > len(shown) else ""
    return ", ".join(f"{r}@{s}" for r, s in shown) + more


def doubted(
    doubt: dict[str, float], yielders: Set[str], now: float, hold: float = DOUBT
) -> set[str]:
    """The nodes whose standbys are not taken as ready: those yielding a task they own
    (``yielders``, from ``asked_to_yield``), now or within ``hold`` seconds (``doubt``,
    node -> until, is updated). A node that
    lost one subscription may be losing every link it has to that Redis (a partition
    cuts them all, and each subscription's heartbeat notices on its own, up to a PING
    apart), and until its standbys notice they report standing by: in a chaos campaign
    the balance that followed a yield gave another task to the standby of the node cut
    off, 11 ms before that standby noticed, and 191 messages were lost. A task whose
    standby is not ready stays where it is (``assignment.assign``)."""
    for node in yielders:
        doubt[node] = now + hold
    for node in [node for node, until in doubt.items() if until <= now]:
        del doubt[node]
    return set(doubt)


def asked_to_yield(owners: Assignment, reports: Reports) -> set[TaskKey]:
    """The tasks whose owner yields them: it lost their subscription (a report of a
    node that no longer owns the task is stale)."""
    return {
        task
        for node, tasks in reports.yielding.items()
        for task in tasks
        if owners.get(task) == node
    }


def confirmed(
    asked: Mapping[TaskKey, float],
    standbys: Assignment,
    written: Mapping[str, float],
    after: Mapping[str, float],
) -> set[TaskKey]:
    """The yielded tasks (``asked``: task -> its yield's first report, ZooKeeper's clock)
    whose standby has reported ``after`` its route's seconds past the yield or later: if
    that report still says standing by (``Control._yielded`` asks), a move there loses
    nothing the owner missed. An older "standing by" may be losing its subscription to
    the same fault, unnoticed yet: Redis stopped for every node, the first owner to
    notice yielded to a standby that noticed a moment later, and the task moved for
    nothing (a test that a source down for everyone moves no task). A standby that is
    not ready lost its subscription too: the owner takes the task back."""
    return {
        task
        for task, at in asked.items()
        if task in standbys
        and written.get(standbys[task], -math.inf) >= at + after.get(task[0], YIELD_CONFIRM)
    }


def whole_groups(
    yielded: set[TaskKey],
    owners: Assignment,
    together: Mapping[str, str],
    movable: Set[TaskKey],
    asked: Set[TaskKey] = frozenset(),
) -> set[TaskKey]:
    """A bridge's directions move as one (``together``): a group goes when one of its
    tasks is yielded and every one of them can move to its standby, else none of it
    (half a group without an owner would go to a node without its ring); and not while
    another of its tasks asks to yield and is not confirmed yet (``asked``: its source
    is another Redis, whose fault its standby may share)."""
    if not yielded or not together:
        return yielded
    result = {task for task in yielded if task[0] not in together}
    for group in {together[task[0]] for task in yielded if task[0] in together}:
        tasks = {task for task in owners if together.get(task[0]) == group}
        if tasks <= movable and not (tasks & set(asked)) - yielded:
            result |= tasks
    return result
