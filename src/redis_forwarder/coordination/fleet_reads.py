"""What the controller reads of the fleet each cycle: the members, and each candidate's
last progress report. Through ``WatchedReads``: only the znodes whose watch fired are
asked again, all at once (issue 18: the controller read 2N znodes one round trip at a
time, every second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination import progress_chunks
from redis_forwarder.coordination.assignment import cut_off
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.watched import WatchedReads
from redis_forwarder.coordination.zk import Znode
from redis_forwarder.model import TaskKey

# node -> (when it reported, on ZooKeeper's clock; per deployment, seconds of silence)
Silences = dict[str, tuple[float, dict[str, float]]]


@dataclass(frozen=True)
class Members:
    candidates: list[str]  # running the controller's config, not drained
    sessions: dict[str, int]  # each member's ZooKeeper session (its znode's owner)
    layout: int  # the oldest assignment layout any member reads (1: an older release)


@dataclass(frozen=True)
class Reports:
    silences: Silences
    standing_by: dict[str, frozenset[TaskKey]]  # the tasks each node stands by for, ready
    running: dict[str, tuple[int, dict[TaskKey, int]]]  # its session, task -> epoch
    # The tasks each node yields to their standbys: it lost their subscription.
    yielding: dict[str, frozenset[TaskKey]] = field(default_factory=dict)
    # When each node's report was last written, on ZooKeeper's clock (its znode's
    # mtime): one clock for every node's report (``control.confirmed``). Not in ``key``.
    written: dict[str, float] = field(default_factory=dict)
    # Of ``yielding``, those whose subscription fell silent on their standby's server.
    silent: dict[str, frozenset[TaskKey]] = field(default_factory=dict)

    def key(self, cut_off_after: float, calm: dict[str, float] | None = None) -> tuple[Any, ...]:
        """What the assignment depends on, for telling whether anything changed: of the
        silences, only who is cut off (they change with every report, which at 500
        nodes is every cycle). ``calm``: the controller's (``assignment.cut_off``)."""
        cut = cut_off(self.silences, cut_off_after, calm)
        return (cut, self.standing_by, self.running, self.yielding)


Memo = dict[str, tuple[tuple[int, int], Any]]
# node -> (the report, what it says): worked out again only for a new report (the
# tasks' names unquoted for every report each cycle were a tenth of a controller's
# cycle at 500 nodes).
Derived = dict[str, tuple[Any, tuple[Any, ...]]]


async def read_members(reads: WatchedReads, paths: Paths, fingerprint: str, memo: Memo) -> Members:
    names = await reads.children(paths.members)
    found = await reads.get_many([f"{paths.members}/{name}" for name in names])
    documents: dict[str, dict[str, Any]] = {}
    sessions: dict[str, int] = {}
    for path, znode in found.items():
        document = parsed(memo, path, znode)
        if znode is not None and isinstance(document, dict) and "id" in document:
            documents[str(document["id"])] = document
            sessions[str(document["id"])] = znode.owner
    drained = {znodes.unquote_name(n) for n in await reads.children(paths.drained)}
    candidates = [
        node
        for node, member in documents.items()
        if member.get("config") == fingerprint and node not in drained
    ]
    layouts = [m.get("layout") for m in documents.values()]
    layout = min((v if isinstance(v, int) else 1 for v in layouts), default=1)
    return Members(sorted(candidates), sessions, layout)


async def read_reports(
    reads: WatchedReads, paths: Paths, members: Members, memo: Memo, derived: Derived
) -> Reports:
    """From each candidate's last progress report: its time (ZooKeeper's clock) and how
    long each Redis deployment had been silent to it then; the tasks it stands by for (a
    planned move goes only to a standby that says so); its session and the tasks it
    runs, with their epochs (``reborn.py``).

    A report written under another session than the member's (its znode's owner) is a
    previous process's: what it stood by for is not ready. A node killed and restarted
    re-registers before it replaces its report; a controller that planned in between
    read the dead process's "standby" as ready, moved a task to the new process, whose
    standby had just started, and lost what its ring did not hold (a chaos campaign:
    8 messages, in CI's run too)."""
    nodes = members.candidates
    found = await reads.get_many([paths.progress_of(node) for node in nodes])
    documents, torn = await _reports(reads, paths, nodes, found, memo)
    silences: Silences = {}
    standing_by: dict[str, frozenset[TaskKey]] = {}
    running: dict[str, tuple[int, dict[TaskKey, int]]] = {}
    yielding: dict[str, frozenset[TaskKey]] = {}
    written: dict[str, float] = {}
    silent: dict[str, frozenset[TaskKey]] = {}
    for node in nodes:
        znode, document = found[paths.progress_of(node)], documents.get(node)
        silence, ready, runs, gives_up, unsure = _derived(derived, node, document)
        if znode is not None and silence:
            silences[node] = (znode.mtime, silence)
        earlier = znode is not None and znode.owner != members.sessions.get(node, znode.owner)
        standing_by[node] = frozenset() if earlier else ready
        if runs is not None:
            running[node] = runs
        if gives_up and not earlier:
            yielding[node], silent[node] = gives_up, unsure
        if znode is not None and not earlier and node not in torn:
            written[node] = znode.mtime  # (a torn one's is the next report's, not this)
    return Reports(silences, standing_by, running, yielding, written, silent)


def _derived(memo: Derived, node: str, document: Any) -> tuple[Any, ...]:
    seen = memo.get(node)
    if seen is not None and seen[0] is document:
        return seen[1]
    said = (
        znodes.silence_of(document),
        frozenset(znodes.standing_by_of(document)),
        znodes.running_of(document),
        frozenset(znodes.yielding_of(document)),
        frozenset(znodes.yielding_of(document, silent=True)),
    )
    memo[node] = (document, said)
    return said


async def _reports(
    reads: WatchedReads,
    paths: Paths,
    nodes: list[str],
    found: dict[str, Znode | None],
    memo: Memo,
) -> tuple[dict[str, Any], set[str]]:
    """Each node's whole report, decoded once per version of its first chunk; the other
    chunks of those that changed read at once. A report read in the middle of a write
    is the one before it until the next cycle reads it again: those nodes (torn)."""
    documents: dict[str, Any] = {}
    torn: set[str] = set()
    more: list[tuple[str, str, Znode, Any, int]] = []
    for node in nodes:
        path = paths.progress_of(node)
        znode = found[path]
        seen = memo.get(path)
        if znode is None:
            memo.pop(path, None)
        elif seen is not None and seen[0] == (znode.czxid, znode.version):
            documents[node] = seen[1]
        else:
            first = znodes.decode(znode.data)
            more.append((node, path, znode, first, progress_chunks.count(first)))
    rest = await reads.session.get_many(
        [paths.progress_chunk(node, i) for node, _p, _z, _f, n in more for i in range(1, n)]
    )
    at = 0
    for node, path, znode, first, count in more:
        chunks = [first, *(znodes.decode(z.data) if z else None for z in rest[at : at + count - 1])]
        at += count - 1
        document = progress_chunks.joined(chunks)
        if document is None:
            reads.mark_stale(path)
            seen = memo.get(path)
            documents[node] = seen[1] if seen else None
            torn.add(node)
            continue
        memo[path] = ((znode.czxid, znode.version), document)
        documents[node] = document
    return documents, torn


def parsed(memo: dict[str, tuple[tuple[int, int], Any]], path: str, znode: Znode | None) -> Any:
    """``znode``'s decoded data, decoded once per version (500 progress reports of
    10 KB each, decoded every cycle, were a controller's largest cost)."""
    if znode is None:
        memo.pop(path, None)
        return None
    stamp = (znode.czxid, znode.version)
    seen = memo.get(path)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    document = znodes.decode(znode.data)
    memo[path] = (stamp, document)
    return document
