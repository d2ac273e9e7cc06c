"""Following a deployment: a fresh view on every trigger, and the changes since the last.

Contract:
- :meth:`TopologyWatcher.start` discovers once and raises if that fails (a wrong
  address or password is the caller's problem, not something to retry forever); given
  ``patience``, it first retries what a failover or a restart explains (no server
  answered, or the master the sentinels name does not say ROLE master yet) for that
  long. A chaos campaign (issue 17) found a node restarted during a Sentinel failover
  exiting at start-up with "a failover may be under way", and staying down.
- After that, a refresh runs every ``interval`` seconds, at once after a sentinel event,
  and at once after :meth:`refresh_soon` (callers report ``MOVED``/``ASK`` replies and
  connection errors through it).
- A failed refresh keeps the last good view, is logged and counted, and is retried with
  backoff (from 0.1 s, capped at ``interval``): during a failover the sentinels may name a
  master that does not say ROLE master yet.
- :meth:`updates` yields a :class:`TopologyUpdate` for each refresh that changed
  something. One consumer at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis_forwarder.errors import ForwarderError, MasterUnconfirmedError, UnreachableError
from redis_forwarder.model import DeploymentKind, Topology
from redis_forwarder.retry import Backoff
from redis_forwarder.settings import DeploymentSettings
from redis_forwarder.topology import sentinel_events
from redis_forwarder.topology.diff import Change, diff
from redis_forwarder.topology.discovery import Discoverer

log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 1.0


@dataclass(frozen=True)
class TopologyUpdate:
    topology: Topology
    changes: tuple[Change, ...]
    at: float
    reason: str


class TopologyWatcher:
    def __init__(self, settings: DeploymentSettings, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.settings = settings
        self.interval = interval
        self.failed_refreshes = 0
        self.refreshes = 0
        self._discoverer = Discoverer(settings)
        self._current: Topology | None = None
        self._wake = asyncio.Event()
        self._reasons: list[str] = []
        self._listeners: list[asyncio.Task[None]] = []

    @property
    def current(self) -> Topology:
        if self._current is None:
            raise RuntimeError("TopologyWatcher.start() has not run")
        return self._current

    @property
    def silent_for(self) -> float:
        """Seconds since any server or sentinel of the deployment answered a refresh.
        A failover does not make this grow (the sentinels, the other nodes still
        answer); a partition or the whole deployment down does."""
        return time.monotonic() - self._discoverer.answered_at

    def rename(self, renamed: Topology) -> list[Change]:
        """Take other names for the current view's shards (the fleet's, see
        ``cluster.named_like``); later views carry these names on. Returns the changes,
        which a caller logs: the shards under their old names are gone."""
        changes = diff(self.current, renamed, time.time())
        self._current = renamed
        return changes

    async def start(self, patience: float = 0.0) -> Topology:
        self._current = await self._first_view(patience)
        if self.settings.kind is DeploymentKind.SENTINEL:
            for address in self.settings.addresses:
                listener = sentinel_events.listen(
                    address,
                    self.settings.sentinel,
                    self.settings.socket_timeout,
                    self.refresh_soon,
                )
                self._listeners.append(asyncio.create_task(listener))
        return self._current

    async def _first_view(self, patience: float) -> Topology:
        deadline = time.monotonic() + patience
        backoff = Backoff(initial=0.2, cap=2.0)
        while True:
            try:
                return await self._discoverer.discover()
            except (MasterUnconfirmedError, UnreachableError) as exc:
                delay = backoff.next_delay()
                if time.monotonic() + delay > deadline:
                    raise
                first_line = str(exc).splitlines()[0]
                log.warning(
                    "%s deployment not ready at start (%s); trying again in %.1fs, for up "
                    "to %.0fs in all",
                    self.settings.kind, first_line, delay, patience,
                )  # fmt: skip
                await asyncio.sleep(delay)

    def refresh_soon(self, reason: str) -> None:
        """Ask for a refresh now. Call from the event loop's thread only."""
        self._reasons.append(reason)
        self._wake.set()

    async def updates(self) -> AsyncIterator[TopologyUpdate]:
        backoff = Backoff(initial=0.1, cap=self.interval)
        wait = self.interval
        while True:
            reason = await self._next_trigger(wait)
            try:
                fresh = await self._discoverer.discover(self.current)
            except ForwarderError as exc:
                self.failed_refreshes += 1
                wait = backoff.next_delay()
                log.warning("topology refresh failed (%s); retrying in %.1fs", exc, wait)
                continue
            backoff.reset()
            wait = self.interval
            self.refreshes += 1
            now = time.time()
            changes = diff(self.current, fresh, now)
            self._current = fresh
            if changes:
                yield TopologyUpdate(fresh, tuple(changes), now, reason)

    async def _next_trigger(self, wait: float) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=wait)
        self._wake.clear()
        reasons, self._reasons = self._reasons, []
        return "; ".join(reasons[:3]) if reasons else "periodic"

    async def close(self) -> None:
        for listener in self._listeners:
            listener.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        self._listeners.clear()
        await self._discoverer.close()

    async def __aenter__(self) -> TopologyWatcher:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


async def watch(
    settings: DeploymentSettings, interval: float = DEFAULT_INTERVAL
) -> AsyncIterator[Change]:
    """Every change to the deployment, as it is seen, until the consumer stops."""
    async with TopologyWatcher(settings, interval) as watcher:
        async for update in watcher.updates():
            for change in update.changes:
                yield change
