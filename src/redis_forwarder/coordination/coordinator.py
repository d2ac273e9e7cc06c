"""What a node may run, decided once per reconcile cycle.

``decision.LocalCoordinator`` (no ``[coordination]``): the node owns every task, epoch 0.

:class:`ZooKeeperCoordinator`, one ``cycle(wanted)`` at a time:

1. Session: lost (or its local lease ran out) -> own nothing (the node stops its stream
   tasks and holds its pub/sub ones, writing nothing, and keeps its standbys: issue 17);
   should ZooKeeper have kept the session after all, the owner znodes of tasks no longer
   assigned here are deleted (``_let_go_of_orphans``); suspended -> keep what runs, but
   the write gate is closed until ZooKeeper confirms the session; a new session (the
   first one too) -> make sure the fleet's paths exist, read the members (which proves
   the ACL admits us) and own nothing. Every cycle: our member znode is there under this
   session, or it is made (again: deleted from outside, it came back only with a new
   session, issue 14); held by another live process, the node id is refused
   (``membership``: exit 2), before the node owns anything.
2. Election: one contender znode per session in the controller lock's queue (kazoo's
   Lock naming, our own single requests); the node whose contender is first is the
   controller, only while its session is connected.
3. Controller (``control.Control``): read members (only those running the same config
   fingerprint), drained nodes and paused routes, compute owners and standbys
   (``assignment.plan``) from the assignment in force, write them back if they changed
   (compare-and-set on the znode version).
4. Ownership: for each task assigned here, create its ephemeral owner znode; its czxid
   is the epoch. A task whose znode another node (or an older session) still holds
   waits, with a watch that wakes the loop when it goes. Tasks no longer assigned
   here are handed back to the node to stop; ``released`` deletes their znodes. The
   tasks assigned here as standby (issue 15) are in ``Decision.stand_by``.

Errors: ``start`` only connects, and fails (exit 6) only when no ZooKeeper server
answers at all. Every later ZooKeeper call (each step above, ``released``,
``reconfigured``, ``leave``) fails as a :class:`ZooKeeperError` that is logged and
retried next cycle, keeping what is owned: while an ensemble answers at all a node
stays up (issue 13: a connection loss during the first calls or while owning a task
ended the process). The exception is :class:`Refused`, the ACL: it becomes the fatal
``ZooKeeperRefusedError`` (exit 6) wherever it surfaces, a configuration to fix.

Watches on members, drained, paused, the assignment and blocking owner znodes wake
the reconcile loop early (``on_change``), so a hand-off takes one round trip, not a
polling interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping, Set
from typing import Any

from redis_forwarder import __version__
from redis_forwarder.config import CoordinationConfig
from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.assignment import Assignment
from redis_forwarder.coordination.control import Control
from redis_forwarder.coordination.decision import Decision
from redis_forwarder.coordination.election import Election
from redis_forwarder.coordination.membership import Membership, process_start
from redis_forwarder.coordination.my_share import MyShare
from redis_forwarder.coordination.parts import LAYOUT
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.progress_writer import ProgressWriter
from redis_forwarder.coordination.requests import Operation
from redis_forwarder.coordination.standby_wait import StandbyWait
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import (
    Conflict,
    NodeExists,
    Refused,
    SessionState,
    ZooKeeperError,
    ZooKeeperSession,
)
from redis_forwarder.errors import ZooKeeperRefusedError
from redis_forwarder.model import TaskKey

log = logging.getLogger(__name__)
# Owner znodes created in one transaction (``_claim_at_once``): about 150 bytes each.
CLAIM_BATCH = 200


class ZooKeeperCoordinator:
    def __init__(
        self,
        config: CoordinationConfig,
        node_id: str,
        fingerprint: str,
        metrics_address: str | None,
        on_change: Any,
        cut_off_after: float,
    ) -> None:
        """``cut_off_after``: seconds of silence from a Redis deployment after which a
        node may be cut off from it (``assignment.cut_off``)."""
        self.config = config
        self._covered: set[TaskKey] = set()  # owned tasks with a standby elsewhere
        self.cut_off_after = cut_off_after
        self.node_id = node_id
        self.fingerprint = fingerprint
        self.metrics_address = metrics_address
        self.paths = Paths(config.root)
        self.session = ZooKeeperSession(
            config.zookeeper, config.session_timeout, on_change, config.credentials()
        )
        self.gate = self.session.gate
        self.owned: dict[TaskKey, int] = {}  # task -> epoch (czxid of its owner znode)
        self.standing_by: set[TaskKey] = set()  # as the last assignment read said
        self._registered_generation: int | None = None
        # Reads answered from the last one until the znode's watch fires (issue 18).
        self.reads = WatchedReads(self.session)
        self.membership = Membership(
            self.session,
            self.paths,
            node_id,
            config.session_timeout,
            self._member_document,
            self.reads,
        )
        self.election = Election(self.session, self.paths, self.reads, node_id)
        self.my_share = MyShare(self.session, self.paths, self.reads, node_id)
        self.progress = ProgressWriter(self.session, self.paths, node_id)
        self._waiting_logged: set[TaskKey] = set()
        # Tasks owned when the session was given up: their owner znodes outlive it when
        # ZooKeeper kept the session after all (``_let_go_of_orphans``).
        self._orphans: set[TaskKey] = set()
        self._started_at = time.time()
        self.control = Control(
            self.session,
            self.paths,
            node_id,
            cut_off_after,
            StandbyWait(config.session_timeout),
            self.reads,
        )

    @property
    def is_controller(self) -> bool:
        return self.election.is_controller

    def running_tasks(self) -> set[TaskKey]:
        """What the members' last reports run, as this node read them as the controller."""
        return self.control.running_tasks()

    def paused_routes(self) -> set[str]:
        return self.control.paused

    def covered(self, task: TaskKey) -> bool:
        """Whether the assignment names a standby on another node for ``task`` (an
        owner with none has nobody to yield to: ``forwarding.yielding``)."""
        return task in self._covered

    @property
    def role(self) -> str:
        return "controller" if self.is_controller else "member"

    @property
    def session_state(self) -> str:
        return str(self.session.state)

    async def start(self) -> None:
        """Connect. Fails (``ZooKeeperUnreachableError``) only when no server answers at
        all; the first session's work is the cycle's, where a connection loss is retried:
        here it ended the process of a node restarting while one server of three died
        (issue 13)."""
        await self.session.start()

    def _refused(self, exc: Refused) -> ZooKeeperRefusedError:
        """The ACL refused us: a configuration to fix, not a fault to wait out."""
        log.error("ZooKeeper refused this node's identity: %s", exc)
        return ZooKeeperRefusedError(self.config.root, self.session.authenticated)

    # ---------------------------------------------------------------- the cycle
    async def cycle(
        self,
        wanted: Set[TaskKey],
        progress: dict[str, Any],
        shard_names: dict[str, Any] | None = None,
        wants_standby: Set[TaskKey] = frozenset(),
        together: Mapping[str, str] | None = None,
        yield_confirm: Mapping[str, float] | None = None,
    ) -> Decision:
        """``shard_names``: this node's names for a cluster source's shards; the
        controller publishes its own with the assignment, and every node gets them back
        in ``Decision.shard_names``. ``wants_standby``: the tasks of ``wanted`` whose
        route wants a standby (``work.standby_tasks``); ``together``: route -> group,
        whose tasks run on one node (``together.py``); ``yield_confirm``: route ->
        seconds (``Control.confirmed``), by the config as ``together``."""
        self.control.together, self.control.yield_confirm = together or {}, yield_confirm or {}
        session = self.session
        session.check_lease()
        if session.state is SessionState.LOST:
            return self._forget_everything()
        if session.state is SessionState.SUSPENDED:
            # Gate closed: running, not writing; standing by too (a blip must not cost
            # a standby what it holds). Suspended again after the session was given up
            # (kazoo reconnecting): the held tasks stay held, or the node stopped them
            # as no longer its own a moment before the same session came back (a chaos
            # campaign: 1,050 messages).
            return self._as_before(dropped=False)
        dropped = False
        try:
            if self._registered_generation != session.generation:
                dropped = bool(self.owned) or self._registered_generation is not None
                self.owned.clear()
                await self._register()
            if not await self.membership.join():
                return Decision(run={}, drop_all=dropped)  # our id is held elsewhere: wait
            if self.membership.progress_made:  # a new progress znode ({}): write ours
                self.membership.progress_made = False
                self.progress.forget()
            await self.progress.publish(progress)
            if await self.election.elect():
                await self.control.run(self.fingerprint, wanted, wants_standby, shard_names)
            assignment, standbys, names = await self._read_assignment()
        except Refused as exc:
            raise self._refused(exc) from exc
        except ZooKeeperError as exc:
            log.warning("coordination cycle: %s; trying again next cycle", exc)
            return self._as_before(dropped)
        mine = {task for task, node in assignment.items() if node == self.node_id}
        mine &= wanted
        release = set(self.owned) - mine
        await self._let_go_of_orphans(mine)
        await self._own(sorted(mine - set(self.owned)))
        self._orphans -= self.owned.keys()  # owned again: under the same epoch, resumed
        run = {task: epoch for task, epoch in self.owned.items() if task in mine}
        stand_by = {t for t, node in standbys.items() if node == self.node_id}
        self._covered = {t for t in run if standbys.get(t, self.node_id) != self.node_id}
        # A task assigned here as owner but not owned yet (its old owner has not let go)
        # stays stood by: its ring is what the takeover replays. Dropping it when the
        # assignment changed, a cycle before the ownership came, lost the whole window
        # (the partition-redis drill: 825 messages).
        waiting = {t for t in mine - set(self.owned) if t in self.standing_by}
        self.standing_by = ((stand_by & wants_standby) - mine) | waiting
        return Decision(
            run=run,
            release=release,
            drop_all=dropped,
            shard_names=names,
            stand_by=set(self.standing_by),
            held=self._orphans & mine,
        )

    def _as_before(self, dropped: bool) -> Decision:
        """A cycle that learnt nothing new (suspended, or a ZooKeeper error midway):
        what is owned runs, what is held stays held. Held tasks stay held until owned
        again, not merely until the session is back: stopped in the cycle whose claims
        failed after a reconnect, a task lost what it had read, and the next cycle owned
        it again under the same epoch (the zk-outage drill: 1,003 messages); stopped
        when kazoo reported the session suspended again after the lease gave it up, the
        same (a chaos campaign: 1,050 messages)."""
        return Decision(
            run=dict(self.owned),
            drop_all=dropped,
            stand_by=set(self.standing_by),
            held=set(self._orphans),
        )

    def _forget_everything(self) -> Decision:
        if self.owned or self.is_controller:
            log.error("ZooKeeper session lost: %d tasks no longer owned", len(self.owned))
        # Listening costs no one anything, and a ring is what a takeover replays: the
        # node keeps standing by for what it stood by for, until an assignment under
        # its next session says otherwise. Giving them up lost every pub/sub message of
        # a ZooKeeper outage longer than the session timeout (a chaos campaign, issue
        # 17: 4,891 messages in 4 outages): every node loses its session in one, the
        # standbys too. (The node holds its own pub/sub tasks too: ``_hold_or_drop``.)
        self._orphans |= set(self.owned)
        self.owned.clear()
        self.election.reset()
        # Register again on whatever session comes next, even one kazoo reports with
        # the old id: the contender and the member may be gone with the lost one.
        self._registered_generation = None
        return Decision(run={}, drop_all=True, stand_by=set(self.standing_by))

    async def reconfigured(self, fingerprint: str) -> None:
        """The node reloaded its config: publish the new fingerprint. The controller
        assigns only to nodes that run its own, so during a rolling reload the work
        gathers on one side, then the other, never on two versions at once."""
        self.fingerprint = fingerprint
        if self._registered_generation is None:
            return
        try:
            await self.session.set(
                self.paths.member(self.node_id), znodes.encode(self._member_document())
            )
        except Refused as exc:
            raise self._refused(exc) from exc
        except ZooKeeperError as exc:  # registered again with the new one on the next session
            log.warning("publishing the new config fingerprint: %s", exc)

    def _member_document(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "metrics": self.metrics_address,
            "config": self.fingerprint,
            "started_at": self._started_at,
            "process_start": process_start(os.getpid()),  # with pid, tells a recycled pid
            "layout": LAYOUT,  # the assignment layout it reads (``parts.py``)
        }

    async def _register(self) -> None:
        """A new session's first work (``Membership.join`` follows). Every step is safe to
        repeat: a connection loss midway fails the cycle, and the next one starts over."""
        await self.session.ensure(
            self.paths.members,
            self.paths.owners,
            self.paths.progress,
            self.paths.drained,
            self.paths.paused,
            self.paths.controller,
            self.paths.parts,
        )
        # ensure_path reads nothing (exists needs no permission): reading proves the ACL.
        await self.session.children(self.paths.members)
        self.membership.new_session()
        self.reads.forget()  # the watches were the old session's
        self.my_share.forget()
        self.control.forget()
        self.election.reset()
        self.progress.forget()
        self._registered_generation = self.session.generation

    async def _read_assignment(self) -> tuple[Assignment, Assignment, dict[str, Any] | None]:
        """Owners, standbys and the controller's shard names. A task that, as the
        assignment records (``reborn.py``), last ran here under another session (an
        earlier process with our id, which died) is not taken: the controller gives it
        to its standby, and a node that took it back the moment the old session expired
        raced the controller, without what the standby held."""
        read = await self.my_share.read()
        owners, standbys, ran = read.owners, read.standbys, read.ran
        keep = self.owned.keys() | self.standing_by  # its ring is what such a task needs
        earlier = {
            task
            for task, (node, session, _epoch) in ran.items()
            if node == self.node_id
            and session != self.session.session_id
            and task in standbys
            and task not in keep
        }
        owners = {t: n for t, n in owners.items() if t not in earlier}
        return owners, standbys, read.shard_names

    async def _let_go_of_orphans(self, mine: set[TaskKey]) -> None:
        """Delete the owner znodes this session still holds for tasks owned before the
        node gave its session up and no longer assigned here. The lease gives a session
        up after a session timeout of silence, but ZooKeeper stopped as a whole expires
        no session: the same one comes back, its owner znodes with it, and the task's
        next owner waited for them for good (a chaos campaign: a task stopped for 3
        minutes). Those still assigned here are owned again by ``_own``."""
        claim = {"node": self.node_id, "session": self.session.session_id}
        for task in sorted(self._orphans - mine):  # those in ``mine``: owned below
            try:
                holder = await self.session.get(self.paths.owner(task))
                if holder is not None and znodes.decode(holder.data) == claim:
                    await self.session.delete(self.paths.owner(task))
                    log.info("%s@%s: let go of its owner znode, kept by ZooKeeper", *task)
            except ZooKeeperError as exc:
                log.warning("%s@%s: letting go: %s; trying again next cycle", *task, exc)
                return
            self._orphans.discard(task)

    async def _own(self, tasks: list[TaskKey]) -> None:
        """Own what is assigned here, all at once (one round trip: one after the other,
        a node given 1,000 tasks took seconds, issue 18). A connection loss keeps what
        is owned and leaves the rest to the next cycle (issue 13: it escaped the cycle
        here and ended the process). A create whose answer was lost is found next
        cycle: the znode names our node and session."""
        claimed = await self._claim_at_once(tasks)
        tasks = [task for task in tasks if task not in claimed]
        results = await asyncio.gather(
            *(self._try_to_own(task) for task in tasks), return_exceptions=True
        )
        failed = [(t, r) for t, r in zip(tasks, results, strict=True) if r is not None]
        for _task, result in failed:
            if isinstance(result, Refused):
                raise self._refused(result) from result
            if not isinstance(result, ZooKeeperError):
                raise result
        if failed:
            (route, shard), first = failed[0]
            log.warning(
                "owning %d tasks (%s@%s: %s); trying again next cycle",
                len(failed), route, shard, first,
            )  # fmt: skip

    async def _claim_at_once(self, tasks: list[TaskKey]) -> set[TaskKey]:
        """Tasks not known to be held, claimed ``CLAIM_BATCH`` to a transaction: a dead
        node's share (2,000 tasks at 20,000 on ten nodes) took 2.5 s as one create each,
        every one a commit of its own (the fleet bench). All of a batch or none: one held
        task fails it, and its tasks are tried one by one (``_try_to_own``). The epochs
        (czxids): a batch's are one zxid (which only needs to grow per task), read
        from one of them. Whatever is not read back is found next cycle, ours."""
        claim = {"node": self.node_id, "session": self.session.session_id}
        data = znodes.encode(claim)
        free = [t for t in tasks if self.reads.peek(self.paths.owner(t)) is None]
        claimed: set[TaskKey] = set()
        for start in range(0, len(free) if len(free) > 1 else 0, CLAIM_BATCH):
            batch = free[start : start + CLAIM_BATCH]
            paths = [self.paths.owner(task) for task in batch]
            try:
                await self.session.commit([Operation("create_ephemeral", p, data) for p in paths])
                # One transaction is one zxid: every znode it made has the czxid of any
                # of them. (Reading all 200 back, 64 in flight, was most of the nodes'
                # side of a takeover at 20,000 tasks on ten nodes.)
                first = await self.session.get(paths[0])
            except Conflict:
                continue
            except ZooKeeperError as exc:
                log.warning("owning %d tasks at once: %s; one by one", len(batch), exc)
                break
            if first is None or znodes.decode(first.data) != claim:
                continue  # gone already (the session is ending): found next cycle
            for task, path in zip(batch, paths, strict=True):
                self.owned[task] = first.czxid
                self.reads.drop(path)
                self._waiting_logged.discard(task)
                claimed.add(task)
                log.info("%s@%s: owned, epoch %d", task[0], task[1], first.czxid)
        return claimed

    async def _try_to_own(self, task: TaskKey) -> None:
        """Create its owner znode. Held by another, it is tried again only once its
        watch fired (the holder let go): each cycle's create and read of every task
        waiting were most of a fleet's requests while work moved (the fleet bench:
        1,500 a second at 500 nodes)."""
        path = self.paths.owner(task)
        if self.reads.peek(path) is not None and not self.reads.changed(path):
            return  # still held: its watch has not fired
        claim = {"node": self.node_id, "session": self.session.session_id}
        try:
            created = await self.session.create(path, znodes.encode(claim), ephemeral=True)
        except NodeExists:
            self.reads.mark_stale(path)  # read it now, whatever was read of it before
            holder = await self.reads.get(path)
            if holder is not None and znodes.decode(holder.data) == claim:
                self.owned[task] = holder.czxid  # ours, from this session
                return
            if task not in self._waiting_logged:
                self._waiting_logged.add(task)
                who = znodes.decode(holder.data) if holder else None
                log.info("%s@%s: waiting for its owner to let go: %s", *task, who)
            return
        self._waiting_logged.discard(task)
        self.reads.drop(path)
        self.owned[task] = created.czxid
        log.info("%s@%s: owned, epoch %d", task[0], task[1], created.czxid)

    # ---------------------------------------------------------------- hand-back
    async def released(self, task: TaskKey) -> None:
        """The node stopped ``task``: delete its owner znode, so the next owner starts
        without waiting for our session to expire."""
        if self.owned.pop(task, None) is None:
            return
        try:
            await self.session.delete(self.paths.owner(task))
        except Refused as exc:
            raise self._refused(exc) from exc
        except ZooKeeperError as exc:
            log.warning("%s@%s: could not release (%s); it goes with the session", *task, exc)
            return
        log.info("%s@%s: ownership released", *task)

    async def leave(self) -> None:
        """Graceful stop, after the node stopped its tasks: release what is left, leave
        the controller queue and membership, close the session. The session is closed
        whatever fails first (its ephemeral znodes go with it); a refusal is raised
        after that."""
        refused: Refused | None = None
        connected = self.session.connected
        try:
            if connected:
                await self._withdraw()
        except Refused as exc:
            refused = exc
        except ZooKeeperError as exc:
            log.warning("leaving: %s", exc)
            connected = False
        await self.session.close()
        if connected and self.membership.joined:
            log.info("left the fleet (membership, controller queue); ZooKeeper session closed")
        else:  # what we hold in ZooKeeper goes when it expires the session
            log.info("ZooKeeper session closed")
        if refused is not None:
            raise self._refused(refused) from refused

    async def _withdraw(self) -> None:
        for task in list(self.owned):
            if self.owned.pop(task, None) is not None:
                await self.session.delete(self.paths.owner(task))
                log.info("%s@%s: ownership released", *task)
        await self.election.withdraw()  # the next in line takes over within a cycle
        await self.membership.leave()
