"""Reads of znodes that are asked of ZooKeeper again only after their watch fired.

Issue 18: every node read the whole assignment, its member znode and the controller
queue every second, and the controller every member's and every node's progress:
at 500 nodes, thousands of requests a second for what had not changed. A watch tells
us when a znode (or a folder's children) changed; until it fires, the last answer is
the answer.

The order that keeps it right: a path is marked fresh *before* its read is sent, and
the read sets the watch; a change after the read fires the watch, which marks the path
stale again (from kazoo's thread: a set's ``add`` is atomic) and wakes the loop. A read
that fails leaves the path stale, since its watch may not be set. The watches belong to
a session: ``forget`` on a new one (a lost session's watches are gone with it; within
a session kazoo sets them again after a reconnect, and ZooKeeper fires those whose znode
changed meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis_forwarder.coordination.zk import Znode, ZooKeeperSession

_DATA, _CHILDREN = "data", "children"


class WatchedReads:
    def __init__(self, session: ZooKeeperSession) -> None:
        self.session = session
        self._data: dict[str, Znode | None] = {}
        self._children: dict[str, list[str]] = {}
        self._stale: set[tuple[str, str]] = set()
        # One watch function per path and kind, kept: kazoo keeps a path's watchers in a
        # set, so the same function set again is one watcher, not one more.
        self._watchers: dict[tuple[str, str], Callable[[Any], None]] = {}
        self.reads = 0  # requests sent (a read answered from the cache is none)

    def forget(self) -> None:
        """A new session: no watch of ours is set any more."""
        self._data.clear()
        self._children.clear()
        self._stale.clear()

    def changed(self, path: str) -> bool:
        """Whether ``get(path)`` would ask ZooKeeper (never read, or its watch fired)."""
        return path not in self._data or (_DATA, path) in self._stale

    async def get(self, path: str) -> Znode | None:
        if not self.changed(path):
            return self._data[path]
        key = (_DATA, path)
        self._stale.discard(key)
        self.reads += 1
        try:
            znode = await self.session.get(path, watch=self._watcher(key))
        except BaseException:
            self._stale.add(key)
            raise
        self._data[path] = znode
        return znode

    async def get_many(self, paths: list[str]) -> dict[str, Znode | None]:
        """Each of ``paths``, those that changed read at once (one round trip)."""
        changed = [path for path in paths if self.changed(path)]
        await asyncio.gather(*(self.get(path) for path in changed))
        return {path: self._data.get(path) for path in paths}

    async def children(self, path: str) -> list[str]:
        key = (_CHILDREN, path)
        if path in self._children and key not in self._stale:
            return self._children[path]
        self._stale.discard(key)
        self.reads += 1
        try:
            names = await self.session.children(path, watch=self._watcher(key))
        except BaseException:
            self._stale.add(key)
            raise
        self._children[path] = names
        return names

    def peek(self, path: str) -> Znode | None:
        """What was last read of ``path`` (None: absent, or never read)."""
        return self._data.get(path)

    def mark_stale(self, path: str) -> None:
        """Read ``path`` again next time (what was read of it did not add up)."""
        self._stale.add((_DATA, path))

    def drop(self, path: str) -> None:
        """Forget ``path`` (a znode no longer of interest); its watch fires once more,
        harmlessly, if it changes."""
        self._data.pop(path, None)
        self._stale.discard((_DATA, path))

    def _watcher(self, key: tuple[str, str]) -> Callable[[Any], None]:
        watcher = self._watchers.get(key)
        if watcher is None:

            def fired(_event: Any, key: tuple[str, str] = key) -> None:  # kazoo's thread
                self._stale.add(key)
                self.session.wake()

            watcher = self._watchers[key] = fired
        return watcher
