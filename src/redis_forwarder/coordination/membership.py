"""A node's membership znode: made, kept (checked every cycle), replaced or refused.

Who holds a node id's membership znode, when it is not this session, is the rule that
refuses a second live process with a running node's id (issue 14) without refusing a
node that restarts after a crash.

The member znode is ephemeral; ZooKeeper records the session that made it, and its
document names the host and pid. Found under another session than ours, it is:

1. ours: a session this process had before (the lease gave it up while ZooKeeper kept
   it): replace it;
2. on this host, from a process that is gone (a crash, then a restart before the old
   session expired), or from a pid that a process started since has taken (a
   container restarted keeps its host name and its pid, often 1): replace it;
3. on this host, from a live process: another node with our id (another ``Node`` in
   this very process too): refuse at once;
4. on another host: we cannot ask its process. A dead process's session expires within
   the session timeout, so we wait (running nothing) up to ``HOLD_FACTOR`` session
   timeouts for the znode to go; still there, its session is alive: refuse.

Before: the newest registration replaced the znode ("replacing it"); when that second
process stopped, it deleted the membership, and the first, still controller, assigned
its empty fleet nothing and logged ``no node`` every second, forever.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.requests import Operation
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import ZooKeeperSession
from redis_forwarder.errors import DuplicateNodeIdError

log = logging.getLogger(__name__)

# How many session timeouts a holder on another host may take to go away. ZooKeeper
# expires a dead client's session at the first tick past its timeout; twice is margin
# for a holder that negotiated a longer one.
HOLD_FACTOR = 2.0


class Verdict(StrEnum):
    REPLACE = "replace"  # ours, or a dead predecessor's: delete it and register
    WAIT = "wait"  # another host's: wait for its session to expire


@dataclass(frozen=True)
class Holder:
    """The member znode's session and document, as found."""

    session: int
    document: dict[str, Any]

    @property
    def host(self) -> str:
        return str(self.document.get("host", "?"))

    @property
    def pid(self) -> int | None:
        pid = self.document.get("pid")
        return pid if isinstance(pid, int) else None

    def describe(self) -> str:
        return f"host {self.host} pid {self.pid} (ZooKeeper session 0x{self.session:x})"


class Membership:
    """Our member znode. ``join`` once a cycle (after a new session's set-up); ``leave``
    on a graceful stop. ``document`` gives the member document (host, pid, ...)."""

    def __init__(
        self,
        session: ZooKeeperSession,
        paths: Paths,
        node_id: str,
        session_timeout: float,
        document: Callable[[], dict[str, Any]],
        reads: WatchedReads,
    ) -> None:
        self.session = session
        self.paths = paths
        self.node_id = node_id
        self.session_timeout = session_timeout
        self.document = document
        self.reads = reads  # our member znode, read again only when its watch fired
        self.progress_made = False  # set when ``join`` made a new (empty) progress znode
        self.sessions: set[int] = set()  # every session this process had: their znodes are ours
        self._made_in: int | None = None  # the session that made our member znode
        self._held_since: float | None = None  # our id found held on another host, since

    @property
    def path(self) -> str:
        return self.paths.member(self.node_id)

    @property
    def joined(self) -> bool:
        """Whether this process ever made its member znode (a refused one did not)."""
        return self._made_in is not None

    def new_session(self) -> None:
        if self.session.session_id is not None:
            self.sessions.add(self.session.session_id)

    async def join(self) -> bool:
        """Our member znode under this session, made if it is not there: checked every
        cycle (read again only when its watch fired), because a membership deleted from
        outside came back only with a new session. False while another host holds our
        id (``_wait_for``); raises ``DuplicateNodeIdError`` when a live process does;
        ZooKeeperError as any call."""
        session_id = self.session.session_id
        existing = await self.reads.get(self.path)
        if existing is not None and existing.owner == session_id:
            return True
        if existing is not None:
            holder = Holder(existing.owner, _document(existing.data))
            if judge(holder, self.sessions, self.node_id, self.paths.root) is Verdict.WAIT:
                return self._wait_for(holder)
            log.info("member %s: replacing the znode of %s", self.node_id, holder.describe())
            await self._replace(existing.version)
        else:
            if self._made_in == session_id:
                log.warning("member %s: its znode was deleted; registering again", self.node_id)
            await self.session.create(self.path, znodes.encode(self.document()), ephemeral=True)
        # Read it again next cycle (its watch fires too, but on kazoo's other thread:
        # the cycle may come first and find the cached "absent").
        self.reads.mark_stale(self.path)
        self._made_in, self._held_since = session_id, None
        progress = self.paths.progress_of(self.node_id)
        await self.session.delete(progress)
        await self.session.create(progress, znodes.encode({}), ephemeral=True)
        self.progress_made = True
        log.info("registered as %s in %s", self.node_id, self.paths.root)
        return True

    async def _replace(self, version: int) -> None:
        """Our earlier znode, deleted and made anew in one transaction. Deleted, then
        made a moment later, the node was no member in between, and a controller that
        planned then gave its tasks away: after a ZooKeeper outage it had just given the
        node the tasks it stood by for (the znode of its expired session still there),
        and their new standby, a node with an empty ring, took them over (a chaos
        campaign: 1,061 pub/sub messages lost). A conflict (the znode changed since we
        read it) is read again next cycle."""
        self.reads.mark_stale(self.path)
        await self.session.commit(
            [
                Operation("delete", self.path, version=version),
                Operation("create_ephemeral", self.path, znodes.encode(self.document())),
            ]
        )

    def _wait_for(self, holder: Holder) -> bool:
        """Another host holds our id: if its process died, its session expires within
        the session timeout and the znode goes (its watch wakes us); past the bound, it
        is alive."""
        bound = HOLD_FACTOR * self.session_timeout
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
            log.warning(
                "node id %s is registered by %s; waiting up to %.0fs for that session to "
                "end (a crashed node's does), else this node stops",
                self.node_id,
                holder.describe(),
                bound,
            )
        if now - self._held_since > bound:
            raise duplicate(self.node_id, self.paths.root, holder)
        return False

    async def leave(self) -> None:
        """Delete our member znode, only if it is ours: a node refused for a duplicate
        id would otherwise delete its holder's membership on the way out."""
        member = await self.session.get(self.path)
        if member is not None and member.owner == self.session.session_id:
            await self.session.delete(self.path, version=member.version)


def _document(data: bytes) -> dict[str, Any]:
    document = znodes.decode(data)
    return document if isinstance(document, dict) else {}


def judge(holder: Holder, our_sessions: set[int], node_id: str, root: str) -> Verdict:
    """What to do about ``holder``; raises ``DuplicateNodeIdError`` for a live process
    on this host (case 3 above). Case 4's deadline is the caller's."""
    if holder.session in our_sessions:
        return Verdict.REPLACE
    if holder.host != socket.gethostname():
        return Verdict.WAIT
    pid = holder.pid
    if pid is None or not _alive(pid, holder.document.get("process_start")):
        return Verdict.REPLACE
    raise duplicate(node_id, root, holder)


def duplicate(node_id: str, root: str, holder: Holder) -> DuplicateNodeIdError:
    return DuplicateNodeIdError(node_id, root, holder.describe())


def _alive(pid: int, recorded_start: object) -> bool:
    """Whether ``pid`` is still the holder's process: it exists and, where both are
    known, started when the holder's document says (``process_start``, clock ticks
    since boot: one clock, unlike wall time, which may have been stepped since), so a
    recycled pid is not taken for the holder. Without them (an older release's
    document, no /proc), a live pid counts as the holder."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if not isinstance(recorded_start, int):
        return True
    return process_start(pid) in (None, recorded_start)


def process_start(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat, field 22); None
    where there is no /proc. With the pid, it names one process for the host's life."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
