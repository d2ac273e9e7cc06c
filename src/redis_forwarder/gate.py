"""The write gate: whether a node may write to sinks now. Apart from ``zk`` so that the
data path does not import kazoo.

Two conditions, both needed:

- ``open``: the session is connected (closed from kazoo's thread the moment it is
  suspended, and by the watchdog; a plain attribute, so any thread can close it);
- the *lease*: ZooKeeper heard from this node less than a fraction of the session
  timeout ago (``renew`` after each operation that succeeded, stamped with when it
  was sent). A process that was frozen (SIGSTOP, a stalled loop, a long GC) wakes up
  with its lease run out on the monotonic clock, before any thread of it had a chance
  to notice that the session is gone: it writes nothing for tasks it may have lost.

And a task writes only under the session it was started in: each task holds a
``bound()`` view that stays shut once a new session began (``generation`` moved on),
even though the gate itself reopens for the new session's tasks. Without it, the
tasks of a lost session could write in the moment between the new session's first
answer and the node dropping them (found by the pause-node drill: a node woken from
SIGSTOP had its watchdog open a new session, and its old tasks wrote what they had
buffered under their old epoch). Only the node opens it again (``rebind``): for a
standby it promotes, which wrote nothing before, and for a task it held through the
lost session and owns again under the same epoch, proof that its owner znode, and so
its ownership, never lapsed (issue 17).
"""

from __future__ import annotations

import asyncio
import time

NO_LEASE = float("inf")
POLL = 0.05  # how often a waiting writer looks at the lease again


class WriteGate:
    def __init__(self, lease_until: float = NO_LEASE) -> None:
        self.open = True
        self.lease_until = lease_until
        self.generation = 0  # the session the gate opens for
        self._changed = asyncio.Event()

    def bound(self) -> BoundGate:
        """A view for one task: writable only under the current session."""
        return BoundGate(self, self.generation)

    def may_write(self) -> bool:
        return self.open and time.monotonic() < self.lease_until

    def close(self) -> None:
        self.open = False

    def reopen(self) -> None:
        self.open = True
        self._changed.set()

    def renew(self, until: float) -> None:
        if until > self.lease_until or self.lease_until is NO_LEASE:
            self.lease_until = until
        self._changed.set()

    async def wait(self) -> None:
        """Until writing is allowed again (the caller's task may be cancelled meanwhile)."""
        while not self.may_write():
            self._changed.clear()
            try:
                async with asyncio.timeout(POLL):
                    await self._changed.wait()
            except TimeoutError:
                pass


class BoundGate:
    """A task's gate: its session's, never a later one's."""

    def __init__(self, gate: WriteGate, generation: int) -> None:
        self.gate = gate
        self.generation = generation
        self._rebound = asyncio.Event()

    def may_write(self) -> bool:
        return self.gate.generation == self.generation and self.gate.may_write()

    def rebind(self) -> None:
        """Bind to the session now: for a standby promoted to owner, which wrote nothing
        before and owns the task under this session. A node keeps standing by through
        a lost session (issue 17); a standby started then and promoted under the next
        session waited on the old one's gate, forever (a chaos campaign: 13 s, until
        the wedge check restarted it)."""
        self.generation = self.gate.generation
        self._rebound.set()

    async def wait(self) -> None:
        """Until writing is allowed again; once the session changed, until ``rebind``
        (the node cancels the task or resumes it)."""
        while not self.may_write():
            if self.gate.generation != self.generation:
                self._rebound.clear()
                await self._rebound.wait()
                continue
            await self.gate.wait()


Gate = WriteGate | BoundGate  # what the data path checks before each write
