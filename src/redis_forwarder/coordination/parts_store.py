"""The controller's reads and writes of the assignment in parts (layout 2, ``parts.py``).

The controller keeps the parts as it last read or wrote them, and reads them all again
only when ``{root}/parts`` has a version it did not make (a new controller, or another
one wrote in between). A write sends only the parts that changed, with the marker when
the layout or the shard names change, in transactions of at most ``TRANSACTION_BYTES``
(ZooKeeper refuses a request over 1 MB, jute.maxbuffer). Each transaction sets
``{root}/parts`` with the version the last one left (compare-and-set): two controllers
(a moment of overlap, an old one not yet aware it lost the lock) cannot interleave
their writes unseen, the second one's transaction fails whole, and it reads the parts
again. Which node owns a task is still decided by its owner znode alone: a part read
mid-write (several transactions) can only make a node wait or let go a moment early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis_forwarder.coordination import parts
from redis_forwarder.coordination.assignment import Assignment
from redis_forwarder.coordination.parts import Ran, Share
from redis_forwarder.coordination.paths import Paths, node_of_part
from redis_forwarder.coordination.requests import Operation
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import Conflict, ZooKeeperError, ZooKeeperSession

log = logging.getLogger(__name__)

TRANSACTION_BYTES = 512 * 1024


class TornParts(ZooKeeperError):
    """A part read in the middle of another controller's write."""


@dataclass
class PartsStore:
    session: ZooKeeperSession
    paths: Paths
    node_id: str
    shares: dict[str, Share] = field(default_factory=dict)  # node -> its part in ZooKeeper
    chunks: dict[str, int] = field(default_factory=dict)  # node -> its part's chunk count
    serial: int = 0
    version: int | None = None  # {root}/parts' version as we last read or wrote it
    largest: int = 0  # the largest znode written (bytes): the fleet bench reports it
    _merged: tuple[dict[str, Share], tuple[Assignment, Assignment, Ran]] | None = None

    def forget(self) -> None:
        self.version = None

    async def load(self, reads: WatchedReads) -> None:
        """Mirror ``{root}/parts``: read every part again unless its version is ours."""
        folder = await reads.get(self.paths.parts)
        if folder is None:
            raise ZooKeeperError(f"{self.paths.parts} is missing (made at registration)")
        if folder.version == self.version:
            return
        names = await self.session.children(self.paths.parts)
        firsts = await self.session.get_many([f"{self.paths.parts}/{n}" for n in names])
        wanted: list[tuple[str, int]] = []
        for name, first in zip(names, firsts, strict=True):
            count = parts.chunk_count(first.data) if first else 0
            wanted += [(name, i) for i in range(1, count)]
        rest = await self.session.get_many([f"{self.paths.parts}/{n}/{i}" for n, i in wanted])
        datas: dict[str, list[bytes | None]] = {
            name: [first.data if first else None] for name, first in zip(names, firsts, strict=True)
        }
        for (name, _i), znode in zip(wanted, rest, strict=True):
            datas[name].append(znode.data if znode else None)
        shares: dict[str, Share] = {}
        for name, part in datas.items():
            found = parts.share_of(part)
            if found is None:
                raise TornParts(f"part {name} read in the middle of a write; reading again")
            shares[node_of_part(name)] = found[0]
        self.shares = shares
        self.chunks = {node_of_part(name): len(part) for name, part in datas.items()}
        self.serial = parts.folder_serial(folder.data)
        self.version = folder.version

    def in_force(self) -> tuple[Assignment, Assignment, Ran]:
        """The whole assignment, merged again only when the parts changed."""
        if self._merged is None or self._merged[0] is not self.shares:
            self._merged = (self.shares, parts.merged(self.shares))
        return self._merged[1]

    async def write(
        self, owners: Assignment, standbys: Assignment, ran: Ran, marker: Operation | None
    ) -> bool:
        """Write what changed (``marker``: the step that writes ``{root}/assignment``, in
        the last transaction, or None to leave it); False when another controller wrote
        first (``load`` reads again)."""
        if self.version is None:
            return False
        new = parts.shares(owners, standbys, ran)
        serial = self.serial + 1
        steps: list[Operation] = []
        counts = dict(self.chunks)
        for node in sorted(new.keys() | self.shares.keys()):
            if new.get(node) == self.shares.get(node):
                continue
            steps += self._part_steps(node, new.get(node), serial, counts)
        if not steps and marker is None:
            return True
        groups = _grouped(steps)
        if marker is not None:
            groups[-1].append(marker)
        version = self.version
        for index, group in enumerate(groups):
            folder = parts.folder_document(serial, self.node_id, index == len(groups) - 1)
            group.append(Operation("set", self.paths.parts, folder, version))
            try:
                await self.session.commit(group)
            except Conflict:
                self.version = None
                return False
            except ZooKeeperError:
                self.version = None  # which of them went through is unknown: read again
                raise
            version += 1
        self.shares, self.chunks, self.serial, self.version = new, counts, serial, version
        return True

    def _part_steps(
        self, node: str, share: Share | None, serial: int, counts: dict[str, int]
    ) -> list[Operation]:
        """Rewrite ``node``'s part (``share``; None: delete it), chunks after the first,
        deleted ones before their parent."""
        before = counts.get(node, 0)
        documents = parts.documents(parts.contents(share), serial) if share else []
        self.largest = max([self.largest, *(len(d) for d in documents)])
        steps = [
            Operation("set" if i < before else "create", self.paths.chunk(node, i), data)
            for i, data in enumerate(documents)
        ]
        steps += [
            Operation("delete", self.paths.chunk(node, i))
            for i in sorted(range(len(documents), before), reverse=True)
            if i > 0
        ]
        if not documents and before:
            steps.append(Operation("delete", self.paths.chunk(node, 0)))
        counts[node] = len(documents)
        if not documents:
            counts.pop(node)
        return steps


def _grouped(steps: list[Operation]) -> list[list[Operation]]:
    """Steps in transactions of at most ``TRANSACTION_BYTES`` of data each."""
    groups: list[list[Operation]] = [[]]
    size = 0
    for step in steps:
        cost = len(step.data) + len(step.path) + 16
        if groups[-1] and size + cost > TRANSACTION_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(step)
        size += cost
    return groups
