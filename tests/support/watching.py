"""Running a TopologyWatcher in a thread of its own, so that a synchronous test can make
faults and poll for the changes it reports."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from redis_forwarder.model import Topology
from redis_forwarder.topology import Change, DeploymentSettings, TopologyWatcher
from tests.support.waiting import wait_until


class WatchRecorder:
    def __init__(self, settings: DeploymentSettings, interval: float = 0.5) -> None:
        self.settings = settings
        self.interval = interval
        self.changes: list[Change] = []
        self.initial: Topology | None = None
        self.watcher: TopologyWatcher | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WatchRecorder:
        self._thread.start()
        assert self._ready.wait(30), "the watcher did not start in 30 s"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(30)

    def _run(self) -> None:
        self._task = self._loop.create_task(self._watch())
        try:
            self._loop.run_until_complete(self._task)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._error = exc
        finally:
            self._ready.set()
            self._loop.close()

    async def _watch(self) -> None:
        async with TopologyWatcher(self.settings, self.interval) as watcher:
            self.watcher = watcher
            self.initial = watcher.current
            self._ready.set()
            async for update in watcher.updates():
                with self._lock:
                    self.changes.extend(update.changes)

    def refresh_soon(self, reason: str) -> None:
        """What a source or sink does when it sees MOVED/ASK or loses a connection."""
        assert self.watcher is not None
        self._loop.call_soon_threadsafe(self.watcher.refresh_soon, reason)

    def current(self) -> Topology:
        assert self.watcher is not None
        return self.watcher.current

    def wait_for_change(
        self, matches: Callable[[Change], bool], what: str, timeout: float = 30.0
    ) -> Change:
        found: list[Change] = []

        def seen() -> bool:
            assert self._error is None, f"the watcher failed: {self._error!r}"
            with self._lock:
                found[:] = [c for c in self.changes if matches(c)]
            return bool(found)

        try:
            wait_until(seen, what, timeout)
        except AssertionError as exc:
            with self._lock:
                seen_changes = [c.to_json() for c in self.changes]
            raise AssertionError(f"{exc}; changes seen: {seen_changes}") from None
        return found[0]
