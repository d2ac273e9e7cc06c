"""Who is the controller: one contender znode per session in the controller lock's
queue (kazoo's Lock naming, our own single requests); the node whose contender is
first is the controller, only while its session is connected.

Not kazoo's ``Lock.acquire(blocking=False)``: it retries a connection loss or an
expired session forever (no deadline, no try limit) inside one pool thread, past our
bound, and could create its contender later, first in the queue and unknown to us: a
fleet without a controller. Nor a try-and-withdraw: that created and deleted a
contender per try, and two nodes watching the lock's children woke each other in a
loop (dozens of cycles a second).

A node that waits watches the contender just ahead of it (kazoo's recipe does the
same), and its own, and reads the queue again only when one of them went. Before issue
18 each waiting node read the whole queue every second (500 nodes: 500 lists of 500
names a second) and watched the holder, so that the holder's end woke every node at
once.
"""

from __future__ import annotations

import logging
import uuid

from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import ZooKeeperSession

log = logging.getLogger(__name__)
# kazoo Lock's contender names (``<prefix>__lock__<sequence>``, data the node id), which
# ``FleetClient.lock_holder`` reads with kazoo's own ``Lock.contenders``.
CONTENDER = "__lock__"


class Election:
    def __init__(
        self, session: ZooKeeperSession, paths: Paths, reads: WatchedReads, node_id: str
    ) -> None:
        self.session = session
        self.paths = paths
        self.reads = reads
        self.node_id = node_id
        # One prefix for the process's life, not per session: a session that the lease
        # gave up but ZooKeeper kept still holds our contender, and finding it by this
        # prefix adopts it (a new prefix would queue behind our own orphan, for good).
        self._prefix = f"{uuid.uuid4().hex}{CONTENDER}"
        self.contender: str | None = None  # our znode in the queue
        self._ahead: str | None = None  # the contender just ahead of ours, watched
        self.is_controller = False

    def reset(self) -> None:
        """A new session: queue again (the contender may be gone with the old one)."""
        self.contender = None
        self._ahead = None
        self.is_controller = False

    async def elect(self) -> bool:
        """Whether this node is the controller now. Queues once per session; then reads
        the queue again only when the contender ahead (or ours) went."""
        if self.is_controller:
            return True
        if self.contender is not None and self._ahead is not None:
            ours = await self.reads.get(self._path(self.contender))
            before = await self.reads.get(self._path(self._ahead))
            if ours is not None and before is not None:
                return False
        contenders = await self.session.children(self.paths.controller)
        if self.contender not in contenders:
            self.contender = await self._contend(contenders)
            # Read the queue again after queueing: a contender created between our read
            # and our create is ahead of us, and the list read before did not have it.
            # Two nodes started together each saw only their own and both led (a full
            # suite run: two controllers writing assignments over each other, one
            # cutting the other off). Our own create is visible to our reads, and with
            # it every create ordered before it.
            contenders = await self.session.children(self.paths.controller)
            if self.contender not in contenders:
                return False  # gone already (the session is ending): queue again next cycle
        mine = _sequence(self.contender)
        ahead = [name for name in contenders if _sequence(name) < mine]
        if not ahead:
            self.is_controller = True
            self._ahead = None
            log.info("elected controller")
            return True
        self._ahead = max(ahead, key=_sequence)
        await self.reads.get(self._path(self.contender))  # be woken when either goes
        await self.reads.get(self._path(self._ahead))
        return False

    async def withdraw(self) -> None:
        """Leave the queue: the next in line takes over within a cycle."""
        if self.contender is not None:
            await self.session.delete(self._path(self.contender))

    def _path(self, name: str) -> str:
        return f"{self.paths.controller}/{name}"

    async def _contend(self, contenders: list[str]) -> str:
        """Our contender: the one with our prefix if there is one (a create whose answer
        was lost made it: Curator's trick, kazoo's too; or a session kept that we had
        given up), else a new one."""
        for name in contenders:
            if name.startswith(self._prefix):
                return name
        prefix = f"{self.paths.controller}/{self._prefix}"
        return await self.session.create_sequential(prefix, self.node_id.encode())


def _sequence(contender: str) -> str:
    """The sequence number ZooKeeper appended: ten digits, ordered as text."""
    return contender[-10:]
