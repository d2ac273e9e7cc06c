"""The node's ZooKeeper session, in one place. This module, ``fleet_client`` (the
command line's) and ``connect`` (how every kazoo client of ours connects, each
connection attempt bounded: see there why) are the only ones that import kazoo.

State contract (what the rest of the node may rely on):

- ``state`` is CONNECTED, SUSPENDED or LOST, as kazoo last reported it, and LOST too
  once the *local lease* ran out: kazoo reports LOST only after it reconnects, so with
  ZooKeeper unreachable the node decides by itself, ``session_timeout`` after the
  suspension, that its session (and with it every ephemeral znode) is gone.
- ``gate`` is open only while the session is CONNECTED. It is closed from kazoo's
  thread the moment the connection is suspended (a plain attribute, read before every
  sink write), so no write starts after ZooKeeper went quiet, even if the event loop
  is busy. A stalled-loop watchdog closes it from its own thread too.
- ``generation`` counts sessions: it changes when a new session replaced a lost one,
  which tells the node to re-register and to treat what it owned as gone.
- Requests go through kazoo's asynchronous API (``call``): none holds a thread, many
  are in flight at once (``get_many``, a transaction's steps in ``commit``); each is
  bounded by the session timeout, and everything a call can raise is translated into
  :class:`ZooKeeperError`: kazoo's errors (connection loss, expired or closed session,
  operation timeout), kazoo's handler timeout and our own bound. Only ``start`` raises
  anything else (``ZooKeeperUnreachableError``: no server answered at all, or every
  server refused the connection, which ``refusals`` finds at once).
  :class:`Refused` (a ZooKeeperError) is the ACL: the caller makes it fatal.
- Each call is one ZooKeeper request, never retried here: a kazoo recipe that retries
  inside (``Lock.acquire`` retries a connection loss forever) would outlive the bound
  in a pool thread and act later, unseen. The reconcile loop retries, next cycle.
- kazoo's callbacks (state changes, watches) run on kazoo's thread and only schedule
  ``on_change`` on the loop (``call_soon_threadsafe``): they never touch loop state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from kazoo.exceptions import (
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.retry import KazooRetry

from redis_forwarder.coordination.connect import kazoo_client, refusals
from redis_forwarder.coordination.requests import Operation, RequestStats, answer, rolled_back
from redis_forwarder.errors import (
    CoordinationError,
    ZooKeeperUnreachableError,
)
from redis_forwarder.gate import WriteGate
from redis_forwarder.settings import Credentials

log = logging.getLogger(__name__)
T = TypeVar("T")


# Requests in flight at once per session (``call``): far under what kazoo's wake-up
# socketpair holds (about 280 one-byte writes on Linux).
IN_FLIGHT = 64

# The part of the session timeout that a confirmed session lets the node write for.
LEASE_FRACTION = 2 / 3


class SessionState(StrEnum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


class ZooKeeperError(CoordinationError):
    """A ZooKeeper operation failed (connection loss, expired session, timeout)."""


class NodeExists(ZooKeeperError):
    pass


class Refused(ZooKeeperError):
    """The znode's ACL does not admit this session's identity."""


class NoNode(ZooKeeperError):
    pass


class Conflict(ZooKeeperError):
    """A transaction's check failed: another writer changed a znode first."""


@dataclass(frozen=True)
class Znode:
    data: bytes
    version: int
    czxid: int  # the creation transaction id: unique and increasing per creation
    mtime: float = 0.0  # when it was last written, by ZooKeeper's clock (s since epoch)
    owner: int = 0  # an ephemeral znode's session id (0: persistent)

    @classmethod
    def of(cls, data: bytes, stat: ZnodeStat) -> Znode:
        return cls(data, stat.version, stat.czxid, stat.mtime / 1000, stat.ephemeralOwner)


class ZooKeeperSession:
    def __init__(
        self,
        hosts: str,
        session_timeout: float,
        on_change: Callable[[], None],
        credentials: Credentials | None = None,
    ) -> None:
        self.hosts = hosts
        self.authenticated = credentials is not None
        self.session_timeout = session_timeout
        self.on_change = on_change  # called on the loop after any state change or watch
        self.state = SessionState.LOST
        self.generation = 0
        # Closed until the first session is confirmed; the lease starts run out.
        self.gate = WriteGate(lease_until=0.0)
        self.gate.close()
        self.suspended_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session_id: int | None = None
        # Set by ``close``: the LOST that kazoo reports then is our own doing, not a loss
        # (every clean SIGTERM logged "ZooKeeper session lost ... dropping every task" at
        # ERROR: a false alarm for anyone alerting on it, issue 14).
        self._closing = False
        self._answered = threading.Event()  # set at the first CONNECTED, on kazoo's thread
        # For kazoo's blocking calls only (start, stop, close); requests go async.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="zookeeper")
        self.stats = RequestStats()
        # kazoo wakes its connection thread with one byte per request on a blocking
        # socketpair, which that thread drains only while connected, and which holds
        # about 280 such bytes: more requests at once than that, sent while ZooKeeper is
        # away, block the loop itself until it is back. So at most this many in flight.
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self.client = kazoo_client(
            hosts,
            session_timeout,
            credentials,
            # Reconnect forever (the node decides about its session with its lease);
            # operations are not retried here: the reconcile loop tries again next cycle.
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
        )
        self.client.add_listener(self._on_state)

    # ------------------------------------------------------------ life
    async def start(self, timeout: float = 10.0) -> None:
        """Connect; raise ``ZooKeeperUnreachableError`` only if no server answered at
        all within ``timeout``. Not kazoo's ``start(timeout)``: it checks ``connected``
        after the wait, so a connection made and dropped at once (the server killed just
        then, issue 13) counted as a time-out, and it stopped the client for good."""
        self._loop = loop = asyncio.get_running_loop()
        refused = await loop.run_in_executor(self._pool, refusals, self.hosts)
        if refused:
            raise ZooKeeperUnreachableError(self.hosts, timeout, "refused", refused)
        try:
            answered = await loop.run_in_executor(self._pool, self._first_answer, timeout)
            reason = "no answer"
        except (KazooTimeoutError, KazooException, OSError) as exc:
            answered, reason = False, type(exc).__name__
        if not answered:
            await loop.run_in_executor(self._pool, self.client.stop)
            await loop.run_in_executor(self._pool, self.client.close)
            raise ZooKeeperUnreachableError(self.hosts, timeout, reason)
        # The CONNECTED event (and any that followed) went to the loop before
        # ``_answered`` was set: applied by now, in kazoo's order.

    def _first_answer(self, timeout: float) -> bool:
        """The pool's thread: start connecting (kazoo retries forever), then wait for
        the first CONNECTED, which ``_on_state`` reports."""
        self.client.start_async()
        return self._answered.wait(timeout)

    async def close(self) -> None:
        """End the session now: its ephemeral znodes go at once (a graceful leave)."""
        self._closing = True
        self.gate.close()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._pool, self.client.stop), 5.0)
            await asyncio.wait_for(loop.run_in_executor(self._pool, self.client.close), 5.0)
        except (TimeoutError, KazooTimeoutError, KazooException, OSError) as exc:
            log.warning("closing the ZooKeeper session: %s", exc)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.state = SessionState.LOST

    def expire_now(self, why: str) -> None:
        """Give the session up from any thread (the watchdog): stop writing at once and
        close the connection, so ZooKeeper drops our ephemeral znodes and others take
        over. kazoo reconnects with a new session afterwards."""
        log.error("giving up the ZooKeeper session: %s", why)
        self.gate.close()
        threading.Thread(target=self._drop_connection, daemon=True).start()

    def _drop_connection(self) -> None:
        """``start_async``, not ``start(timeout)``: kazoo's ``start`` stops the client for
        good when it times out, and a node that gave its session up while ZooKeeper was
        unreachable would then stay disconnected while its process lived on. Started
        this way, the connection retries forever (``connection_retry``)."""
        try:
            self.client.stop()
            self.client.start_async()
        except (KazooTimeoutError, KazooException, OSError) as exc:
            log.warning("reconnecting to ZooKeeper after giving up the session: %s", exc)

    # ------------------------------------------------------------ state
    def _on_state(self, state: str) -> None:
        """kazoo's thread: record, close the gate at once if suspended, tell the loop."""
        if state == KazooState.SUSPENDED or state == KazooState.LOST:
            self.gate.close()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._apply, state)
        if state == KazooState.CONNECTED:
            self._answered.set()

    def _apply(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            self._connected()
        elif state == KazooState.SUSPENDED:
            self.state = SessionState.SUSPENDED
            self.suspended_at = time.monotonic()
            log.warning("ZooKeeper connection suspended: not writing until it is back")
        else:
            self._lost("kazoo reports the session lost")
        self.on_change()

    def _connected(self) -> None:
        session_id = self.client.client_id[0] if self.client.client_id else None
        if session_id != self._session_id:
            if self._session_id is not None:
                log.warning("a new ZooKeeper session replaced the lost one")
            self._session_id = session_id
            self.generation += 1
            # Before the gate reopens: tasks of the old session stay shut for good.
            self.gate.generation = self.generation
        elif self.state is SessionState.SUSPENDED:
            log.info("ZooKeeper connection back, session kept: writing again")
        self.state = SessionState.CONNECTED
        self.suspended_at = None
        self.gate.reopen()

    def _lost(self, why: str) -> None:
        if self.state is not SessionState.LOST and not self._closing:
            log.error("ZooKeeper session lost (%s): dropping every task", why)
        self.state = SessionState.LOST
        self.gate.close()

    def check_lease(self) -> None:
        """Declare the session lost once it has been suspended for a session timeout:
        ZooKeeper has expired it by then, whatever kazoo says later."""
        if self.state is not SessionState.SUSPENDED or self.suspended_at is None:
            return
        if time.monotonic() - self.suspended_at >= self.session_timeout:
            self._lost(f"suspended for {self.session_timeout:.1f}s, the session timeout")
            self._session_id = None  # whatever session comes next is a new one

    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED

    # ------------------------------------------------------------ operations
    async def call(self, start: Callable[[], Any]) -> Any:
        """One ZooKeeper request, sent with kazoo's asynchronous API (``start`` returns
        kazoo's async result) and bounded by the session timeout. No thread waits on
        it: many requests are in flight at once (``get_many``), one round trip for
        all. (A thread pool of four, one blocking call each, made a controller read
        500 members' progress one round trip at a time: issue 18.)"""
        loop = asyncio.get_running_loop()
        sent = time.monotonic()
        self.stats.requests += 1
        try:
            async with asyncio.timeout(self.session_timeout), self._in_flight:
                result = await answer(loop, start)
            self._heard(sent)
            return result
        except NodeExistsError as exc:
            self._heard(sent)
            raise NodeExists(str(exc) or "node exists") from exc
        except NoNodeError as exc:
            self._heard(sent)
            raise NoNode(str(exc) or "no node") from exc
        except NoAuthError as exc:
            self._heard(sent)
            raise Refused("not authorized by the znode's ACL") from exc
        except SessionExpiredError as exc:  # ConnectionClosedError too: the client stopped
            self._lost(f"an operation found the session ended ({type(exc).__name__})")
            raise ZooKeeperError(f"{type(exc).__name__}: the session ended") from exc
        except (KazooException, KazooTimeoutError, TimeoutError) as exc:
            raise ZooKeeperError(f"{type(exc).__name__}: {exc}") from exc

    def _heard(self, sent: float) -> None:
        """ZooKeeper answered a request sent at ``sent``: it cannot expire the session
        before ``sent + session_timeout``; writes may go on until a safe part of that."""
        if self.state is SessionState.CONNECTED:
            self.gate.renew(sent + self.session_timeout * LEASE_FRACTION)

    def watcher(self) -> Callable[[Any], None]:
        """The kazoo watch function that wakes the loop. Always the same function:
        kazoo keeps a path's watchers in a set until the watch fires, and the cycle sets
        its watches again every second, so a new function per call would pile up for
        as long as the znode does not change (a leak of one closure per path per cycle)."""
        return self._fired

    def _fired(self, _event: Any) -> None:
        self.wake()

    def wake(self) -> None:
        """Any thread: run ``on_change`` on the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in between
                loop.call_soon_threadsafe(self.on_change)

    async def ensure(self, *paths: str) -> None:
        for path in paths:
            await self.call(lambda p=path: self.client.ensure_path_async(p))  # type: ignore[misc]

    async def create_sequential(self, prefix: str, data: bytes) -> str:
        """Create an ephemeral znode named ``prefix`` and a sequence number; return its
        name (the last part of its path)."""
        self.stats.bytes_written += len(data)
        created = await self.call(
            lambda: self.client.create_async(
                prefix, data, ephemeral=True, sequence=True, makepath=True
            )
        )
        return str(created).rsplit("/", 1)[-1]

    async def create(self, path: str, data: bytes, *, ephemeral: bool = False) -> Znode:
        """Create ``path``; return it as created (its czxid is its epoch)."""
        self.stats.bytes_written += len(data)
        _path, stat = await self.call(
            lambda: self.client.create_async(
                path, data, ephemeral=ephemeral, makepath=True, include_data=True
            )
        )
        return Znode.of(data, stat)

    async def get(self, path: str, watch: bool | Callable[[Any], None] = False) -> Znode | None:
        """``watch``: True for the watch that wakes the loop, or a watch function."""
        watcher = self.watcher() if watch is True else (watch or None)
        while True:
            try:
                data, stat = await self.call(lambda: self.client.get_async(path, watch=watcher))
            except NoNode:
                if watcher is None:
                    return None
                # Be told when it appears. Made between the two requests, it is there
                # now, and its creation fired no watch of ours: read it again. (A node
                # restarted read its part as absent a moment before the controller
                # wrote it, waited for a change that never came, and owned nothing for
                # the rest of a chaos campaign: 7,570 stream entries not forwarded.)
                if await self.call(lambda: self.client.exists_async(path, watch=watcher)):
                    continue
                return None
            self.stats.bytes_read += len(data)
            return Znode.of(data, stat)

    async def get_many(self, paths: list[str]) -> list[Znode | None]:
        """Many reads in flight at once, unwatched: one round trip, not one per path."""
        return list(await asyncio.gather(*(self.get(path) for path in paths)))

    async def children(self, path: str, watch: bool | Callable[[Any], None] = False) -> list[str]:
        watcher = self.watcher() if watch is True else (watch or None)
        try:
            names: list[str] = await self.call(
                lambda: self.client.get_children_async(path, watch=watcher)
            )
        except NoNode:
            return []
        self.stats.bytes_read += sum(len(name) for name in names)
        return names

    async def set(self, path: str, data: bytes, version: int = -1) -> None:
        self.stats.bytes_written += len(data)
        await self.call(lambda: self.client.set_async(path, data, version=version))

    async def delete(self, path: str, version: int = -1) -> None:
        with contextlib.suppress(NoNode):
            await self.call(lambda: self.client.delete_async(path, version=version))

    async def commit(self, operations: list[Operation]) -> None:
        """One ZooKeeper transaction (multi): all of ``operations`` or none. A failed
        check, version, or existence is :class:`Conflict` (another writer was first);
        anything else as ``call``."""
        self.stats.bytes_written += sum(len(op.data) for op in operations)

        def start() -> Any:
            transaction = self.client.transaction()
            for op in operations:
                op.add_to(transaction)
            return transaction.commit_async()

        results = await self.call(start)
        failed = [r for r in results if isinstance(r, Exception) and not rolled_back(r)]
        if failed:
            raise Conflict(f"transaction refused: {type(failed[0]).__name__}")

    @property
    def session_id(self) -> int | None:
        return self._session_id
