"""What a node reads of the assignment: in layout 2 (``parts.py``) its own part, only
when its watch says it changed; in layout 1 (a controller of an older release, or a
fleet with a member of one) the whole document, also only when it changed.

The result is the same in both: owners and standbys of the tasks that concern this
node, the records of their last runs (``reborn.py``), the controller's shard names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis_forwarder.coordination import parts
from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.assignment import Assignment
from redis_forwarder.coordination.parts import Share
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import ZooKeeperSession
from redis_forwarder.model import TaskKey

Ran = dict[TaskKey, tuple[str, int, int]]


@dataclass(frozen=True)
class Read:
    owners: Assignment
    standbys: Assignment
    ran: Ran
    shard_names: dict[str, Any] | None


class MyShare:
    def __init__(
        self, session: ZooKeeperSession, paths: Paths, reads: WatchedReads, node_id: str
    ) -> None:
        self.session = session
        self.paths = paths
        self.reads = reads
        self.node_id = node_id
        self._part: Share | None = None  # as last read whole

    def forget(self) -> None:
        self._part = None

    async def read(self) -> Read:
        marker = await self.reads.get(self.paths.assignment)
        data = marker.data if marker else None
        names = znodes.shard_names_of(data)
        if parts.layout_of(data) == parts.LAYOUT:
            share = await self._share()
            me = self.node_id
            standbys = {t: s for t, (s, _, _) in share.owns.items() if s}
            standbys.update(dict.fromkeys(share.stands_by, me))
            ran = {t: (me, s, e) for t, (_, s, e) in share.owns.items() if s}
            return Read(dict.fromkeys(share.owns, me), standbys, ran, names)
        recorded = await self.reads.get(self.paths.ran)
        return Read(
            znodes.assignment_of(data)[0],
            znodes.standbys_of(data),
            znodes.ran_of(recorded.data if recorded else None),
            names,
        )

    async def _share(self) -> Share:
        """Our part: read again when its first znode changed (every write of a part
        rewrites it). Read in the middle of a write, it is the last one read whole until
        the next cycle reads it again."""
        path = self.paths.part(self.node_id)
        if self._part is not None and not self.reads.changed(path):
            return self._part
        first = await self.reads.get(path)
        if first is None:
            self._part = Share({}, frozenset())
            return self._part
        count = parts.chunk_count(first.data)
        rest = await self.session.get_many(
            [self.paths.chunk(self.node_id, i) for i in range(1, count)]
        )
        found = parts.share_of([first.data, *(z.data if z else None for z in rest)])
        if found is None:
            self.reads.mark_stale(path)
            return self._part or Share({}, frozenset())
        self._part = found[0]
        return self._part
