"""How a node writes its progress report: when what the controller decides by changed
(``paths.summary``), else every ``PROGRESS_REFRESH`` seconds for ``status``'s counters
(issue 18: every node wrote it every second, 500 writes a second of unchanged news);
in chunks under the size bound (``progress_chunks``), the others first, the first last.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination import progress_chunks
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.zk import NoNode, ZooKeeperSession

# Progress unchanged in what the controller decides by is written this often anyway,
# for ``status``'s counters (its ``STALE_AFTER`` is above it).
PROGRESS_REFRESH = 2.0


class ProgressWriter:
    def __init__(self, session: ZooKeeperSession, paths: Paths, node_id: str) -> None:
        self.session = session
        self.paths = paths
        self.node_id = node_id
        self._published: tuple[Any, ...] | None = None  # the last report written, in sum
        self._published_at = 0.0
        self._stamp = 0
        self._chunks = 1  # how many chunks the last write left

    def forget(self) -> None:
        """A new session, or a new (empty) progress znode: write at the next cycle."""
        self._published = None
        self._chunks = 1

    async def publish(self, progress: dict[str, Any]) -> None:
        progress = {**progress, znodes.SESSION: self.session.session_id}
        summary, now = znodes.summary(progress), time.monotonic()
        if summary == self._published and now - self._published_at < PROGRESS_REFRESH:
            return
        self._stamp += 1
        chunks = progress_chunks.split(progress, self._stamp)
        paths = [self.paths.progress_chunk(self.node_id, i) for i in range(len(chunks))]
        datas = [znodes.encode(chunk) for chunk in chunks]
        await asyncio.gather(*(self._put(p, d) for p, d in zip(paths[1:], datas[1:], strict=True)))
        await self._put(paths[0], datas[0])
        for index in range(len(chunks), self._chunks):  # a smaller report than the last
            await self.session.delete(self.paths.progress_chunk(self.node_id, index))
        self._chunks = len(chunks)
        self._published, self._published_at = summary, now

    async def _put(self, path: str, data: bytes) -> None:
        try:
            await self.session.set(path, data)
        except NoNode:  # new, or deleted from outside ("no node", every cycle, before)
            await self.session.create(path, data, ephemeral=True)
