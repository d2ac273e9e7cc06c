"""The controller's step of a coordination cycle, run by the node whose contender is
first in the controller queue: read who may run tasks (members running the
controller's config, not drained, not cut off from Redis) and the assignment in force,
compute owners and standbys (``assignment.plan``), and write them back in one
compare-and-set on the assignment znode when anything changed, standbys alone too.

Apart from ``coordinator`` so that each stays one job under the size limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.assignment import (
    Assignment,
    cut_off,
    moves,
    plan,
    reaching,
)
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.reborn import Ran, Running, gone_owners, ran_now
from redis_forwarder.coordination.standby_wait import StandbyWait
from redis_forwarder.coordination.zk import NodeExists, NoNode, ZooKeeperSession
from redis_forwarder.model import TaskKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InForce:
    """The assignment document as the controller read it."""

    owners: Assignment
    standbys: Assignment
    serial: int
    shard_names: dict[str, Any] | None
    version: int | None  # None: no document yet
    # task -> (node, session, epoch) it last ran under, as written (``reborn.py``)
    ran: dict[TaskKey, tuple[str, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Control:
    session: ZooKeeperSession
    paths: Paths
    node_id: str
    cut_off_after: float  # seconds of silence from Redis: see ``assignment.cut_off``
    waiting: StandbyWait  # tasks whose standby is not back yet wait for it (a while)

    async def run(
        self,
        fingerprint: str,
        wanted: set[TaskKey],
        wants_standby: set[TaskKey],
        shard_names: dict[str, Any] | None,
    ) -> None:
        """One controller step. ``wants_standby``: the tasks of ``wanted`` whose route
        wants a standby (pub/sub routes, by the controller's config)."""
        session, paths = self.session, self.paths
        candidates, sessions = await self._candidates(fingerprint)
        silences, standing_by, running = await self._reports(candidates)
        cut = cut_off(silences, self.cut_off_after)
        eligible = reaching(candidates, cut)
        paused = {znodes.unquote_name(n) for n in await session.children(paths.paused, watch=True)}
        in_force = await self._in_force()
        ready = {t for t, node in in_force.standbys.items() if t in standing_by.get(node, ())}
        rebalance = await session.get(paths.rebalance, watch=True)
        # A rebalance drops stickiness, not the standbys: the tasks go to them first.
        previous = {} if rebalance else in_force.owners
        with_standby = [t for t in wants_standby & wanted if t in in_force.standbys]
        dead = gone_owners(in_force.owners, in_force.ran, sessions, running, with_standby)
        if dead:
            # Its owner is gone even though its node is back: to its standby, as any
            # task of a dead owner (``assignment.promotions``).
            previous = {t: "" if t in dead else n for t, n in previous.items()}
            log.info(
                "%d tasks of a node that died and came back go to their standbys: %s",
                len(dead), ", ".join(f"{r}@{s}" for r, s in sorted(dead)),
            )  # fmt: skip
        owners, standbys = plan(
            wanted, eligible, previous, in_force.standbys, wants_standby, ready, paused
        )
        held = self.waiting.held(
            wants_standby & wanted, previous, in_force.standbys, eligible, time.monotonic()
        )
        for task in held:  # no owner ("": no node's id) until its standby is back
            owners[task], standbys[task] = "", in_force.standbys[task]
        if held:
            log.info(
                "%d tasks wait for their standby to come back: %s",
                len(held), ", ".join(f"{r}@{s}" for r, s in sorted(held)),
            )  # fmt: skip
        if rebalance is not None:
            await session.delete(paths.rebalance)
        # A gone owner's record goes with it: whoever owns the task next may take it.
        last_ran = {task: ran for task, ran in in_force.ran.items() if task not in dead}
        ran = ran_now(owners, last_ran, sessions, running, wants_standby & wanted)
        unchanged = (owners, standbys, shard_names) == (
            in_force.owners,
            in_force.standbys,
            in_force.shard_names,
        )
        if ran != in_force.ran:  # a znode of its own, watched by nobody: wakes no node
            await self._write_ran(ran)
        if unchanged or not await self._write(in_force, owners, standbys, shard_names):
            return
        moved = moves(in_force.owners, owners)
        passed_over = ", ".join(f"{n} (from {'/'.join(d)})" for n, d in sorted(cut.items()))
        log.info(
            "assignment %d: %d tasks on %d nodes, %d moved (%d to their standby), %d standbys%s",
            in_force.serial + 1,
            len(owners),
            len(eligible),
            len(moved),
            sum(1 for task in moved if owners[task] == in_force.standbys.get(task)),
            len(standbys),
            f"; none for nodes cut off from Redis: {passed_over}" if passed_over else "",
        )

    async def _candidates(self, fingerprint: str) -> tuple[list[str], dict[str, int]]:
        """Members running the controller's config, not drained; and each member's
        ZooKeeper session (its member znode's ephemeral owner)."""
        session, paths = self.session, self.paths
        members: dict[str, dict[str, Any]] = {}
        sessions: dict[str, int] = {}
        for name in await session.children(paths.members, watch=True):
            znode = await session.get(f"{paths.members}/{name}")
            document = znodes.decode(znode.data) if znode else None
            if znode is not None and isinstance(document, dict) and "id" in document:
                members[str(document["id"])] = document
                sessions[str(document["id"])] = znode.owner
        drained = {
            znodes.unquote_name(n) for n in await session.children(paths.drained, watch=True)
        }
        candidates = [
            node
            for node, member in members.items()
            if member.get("config") == fingerprint and node not in drained
        ]
        return candidates, sessions

    async def _in_force(self) -> InForce:
        current = await self.session.get(self.paths.assignment)
        data = current.data if current else None
        owners, serial = znodes.assignment_of(data)
        ran = await self.session.get(self.paths.ran)
        return InForce(
            owners,
            znodes.standbys_of(data),
            serial,
            znodes.shard_names_of(data),
            current.version if current else None,
            znodes.ran_of(ran.data if ran else None),
        )

    async def _write(
        self,
        in_force: InForce,
        owners: Assignment,
        standbys: Assignment,
        shard_names: dict[str, Any] | None,
    ) -> bool:
        """Write the new document over the one read (compare-and-set): False when
        another controller wrote first (read next cycle)."""
        document = znodes.assignment_document(
            owners, self.node_id, in_force.serial + 1, shard_names, standbys
        )
        if in_force.version is None:
            try:
                await self.session.create(self.paths.assignment, document)
            except NodeExists:
                return False
        else:
            await self.session.set(self.paths.assignment, document, version=in_force.version)
        return True

    async def _write_ran(self, ran: Ran) -> None:
        data = znodes.ran_document(ran)
        try:
            await self.session.set(self.paths.ran, data)
        except NoNode:
            await self.session.create(self.paths.ran, data)

    async def _reports(
        self, nodes: list[str]
    ) -> tuple[dict[str, tuple[float, dict[str, float]]], dict[str, set[TaskKey]], Running]:
        """From each node's last progress report: its time (ZooKeeper's clock) and how
        long each Redis deployment had been silent to it then; the tasks it stands by
        for (a planned move goes only to a standby that says so); its session and the
        tasks it runs, with their epochs (``reborn.py``)."""
        silences: dict[str, tuple[float, dict[str, float]]] = {}
        standing_by: dict[str, set[TaskKey]] = {}
        running: dict[str, tuple[int, dict[TaskKey, int]]] = {}
        for node in nodes:
            znode = await self.session.get(self.paths.progress_of(node))
            document = znodes.decode(znode.data) if znode else None
            silence = znodes.silence_of(document)
            if znode is not None and silence:
                silences[node] = (znode.mtime, silence)
            standing_by[node] = znodes.standing_by_of(document)
            if (runs := znodes.running_of(document)) is not None:
                running[node] = runs
        return silences, standing_by, running
