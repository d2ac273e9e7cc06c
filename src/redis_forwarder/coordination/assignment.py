"""Which node forwards which task: balanced and sticky. Pure.

``assign`` takes the tasks the topology calls for, the nodes that may run them, and the
assignment in force, and returns the new one:

- every task of a route that is not paused goes to exactly one eligible node (a live
  member, not drained, running the controller's config, and not cut off from Redis
  while another member is not: ``reaching``);
- loads differ by at most one task;
- as few tasks as possible change owner: a node keeps its tasks up to its share, and
  the nodes that already hold the most get the shares that are one task larger.

Ties are broken by names, so the same inputs always give the same assignment: a newly
elected controller computes what the old one did and nothing churns.

Standbys (issue 15): a pub/sub task may have a standby, a node other than its owner that
subscribes all along and keeps what it receives, so that a takeover loses nothing.
``assign`` takes the standbys in force (``Standbys``) and moves such tasks only to them,
where a move of another task would lose messages:

- a task whose owner is no longer eligible (dead, drained, cut off) goes to its standby
  if that node is eligible: only the standby holds what was published meanwhile;
- a node over its share (a join, a promotion) gives up first the tasks whose standby is
  ready (its node reports standing by) and has room, to that standby; then tasks that
  want no standby (streams: their entries wait in Redis), by name, to the round robin.
  A task that wants a standby and has no ready one with room stays where it is;
- a task without an owner (a rebalance) goes to its ready standby if it has room; then
  round robin, as without standbys.

So "loads differ by at most one" may break for a while, and only with tasks that want
a standby (no loss beats balance): a node keeps every task it is promoted to, past its
share if it must, and keeps what it could only hand over with a gap.
``assign_standbys`` makes it a while only: it gives such a node's excess tasks standbys
on the nodes short of work (``_steered``); once those report standing by, the next
assignment moves the tasks there. Without standbys, ``assign`` is what it was.

``assign_standbys`` gives each task that wants one a standby: an eligible node other than
its owner (none with one eligible node), balanced, sticky.
"""

from __future__ import annotations

import bisect
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from redis_forwarder.model import TaskKey

Assignment = dict[TaskKey, str]  # task -> node id


@dataclass(frozen=True)
class Standbys:
    """The standbys in force, as ``assign`` needs them."""

    nodes: Mapping[TaskKey, str] = field(default_factory=dict)  # task -> its standby
    # Tasks whose standby reports standing by: a move there loses nothing.
    ready: frozenset[TaskKey] = frozenset()
    # Tasks that want a standby: a planned move goes to a ready standby or nowhere.
    wanting: frozenset[TaskKey] = frozenset()


def assign(
    tasks: Iterable[TaskKey],
    nodes: Iterable[str],
    previous: Mapping[TaskKey, str],
    paused_routes: Iterable[str] = (),
    standbys: Standbys | None = None,
) -> Assignment:
    """The new assignment of ``tasks`` to ``nodes`` (the eligible ones only), with the
    standbys in force, whom work moves to first."""
    standby = standbys or Standbys()
    paused = set(paused_routes)
    wanted = sorted(t for t in set(tasks) if t[0] not in paused)
    eligible = sorted(set(nodes))
    if not eligible or not wanted:
        return {}
    promoted = promotions(wanted, eligible, previous, standby.nodes)
    held: dict[str, list[TaskKey]] = {node: [] for node in eligible}
    for task in wanted:
        owner = promoted.get(task, previous.get(task))
        if owner is not None and owner in held:
            held[owner].append(task)
    # What a node cannot give up: its promotions, and the tasks that want a standby and
    # have no ready one (a move would be a gap). The shares of the others are what is
    # left: counting those as movable gave one node two tasks and another none (a
    # property test: a node holding three such tasks, eight tasks on six nodes). So is
    # one whose ready standby already holds a full share: it will have no room (the
    # same property test, later: a node kept such a task past its share while another
    # node, given the larger share it would have needed, kept two and one node none).
    most = -(-len(wanted) // len(eligible))  # the larger share, rounded up
    full = {node for node in eligible if len(held[node]) >= most}
    pinned = {
        node: sum(
            1
            for t in held[node]
            if t in promoted
            or (t in standby.wanting and (t not in standby.ready or standby.nodes.get(t) in full))
        )
        for node in eligible
    }
    # A node that could not give up its excess after all (its ready standby had no room
    # under these shares) is pinned at what it kept, and the shares are made again: the
    # larger share it was not given went to another node, which kept two while one
    # node had none (a property test: eight tasks on six nodes). Each round pins one
    # node more, so this ends.
    for _round in range(len(eligible) + 1):
        share = _shares(len(wanted), eligible, held, pinned)
        room = {node: share[node] - min(share[node], len(held[node])) for node in eligible}
        result: Assignment = {}
        stuck = {}
        for node in eligible:
            kept = _kept(node, held[node], share[node], promoted, standby, room, result)
            result.update(dict.fromkeys(kept, node))
            if len(kept) > max(share[node], pinned[node]):
                stuck[node] = len(kept)
        if not stuck:
            break
        pinned.update(stuck)
    for task in wanted:  # no owner (a rebalance): its ready standby first, if it has room
        node = standby.nodes.get(task, "")
        if task not in result and task in standby.ready and room.get(node, 0) > 0:
            result[task] = node
            room[node] -= 1
    # Round robin over the nodes with room, so that a new route's shards spread out.
    open_nodes = [node for node in eligible if room[node]]
    turn = 0
    for task in (task for task in wanted if task not in result):
        while not room[open_nodes[turn % len(open_nodes)]]:
            turn += 1
        node = open_nodes[turn % len(open_nodes)]
        result[task] = node
        room[node] -= 1
        turn += 1
    return result


def promotions(
    tasks: Iterable[TaskKey],
    nodes: Iterable[str],
    previous: Mapping[TaskKey, str],
    standbys: Mapping[TaskKey, str],
) -> dict[TaskKey, str]:
    """Tasks whose owner is gone (it had one, no longer eligible) and whose standby is
    eligible: task -> the standby, which must own it now, since it holds the messages."""
    eligible = set(nodes)
    return {
        task: standbys[task]
        for task in tasks
        if (owner := previous.get(task)) is not None
        and owner not in eligible  # not ``in (None, *eligible)``: a tuple of 500 per task
        and standbys.get(task) in eligible
    }


def _shares(
    total: int, eligible: list[str], held: Mapping[str, list[TaskKey]], pinned: Mapping[str, int]
) -> dict[str, int]:
    """Each node's number of tasks. A node promoted to more tasks than an even share keeps
    them all (its share is its promotions) and the other nodes share the rest evenly;
    otherwise the larger shares go to the nodes that hold the most already: fewest moves."""
    fixed: dict[str, int] = {}
    while True:
        free = [node for node in eligible if node not in fixed]
        base, extra = divmod(total - sum(fixed.values()), len(free))
        over = [node for node in free if pinned[node] > base + (1 if extra else 0)]
        larger = [node for node in free if pinned[node] == base + 1]
        if not over and len(larger) > extra:  # more need the larger share than there are
            over = larger
        if not over:
            break
        # The free nodes' promotions always fit their tasks: free never empties.
        fixed.update((node, pinned[node]) for node in over)
    # The larger shares: first to nodes promoted to more than base, then by holdings.
    by_holdings = sorted(free, key=lambda node: (pinned[node] <= base, -len(held[node]), node))
    share = {node: base + (1 if rank < extra else 0) for rank, node in enumerate(by_holdings)}
    return {**share, **fixed}


def _kept(
    node: str,
    held: list[TaskKey],
    share: int,
    promoted: Mapping[TaskKey, str],
    standbys: Standbys,
    room: dict[str, int],
    result: Assignment,
) -> list[TaskKey]:
    """What ``node`` keeps of what it holds: its promotions, then its other tasks up to
    its share. Past its share it gives up first the tasks whose standby is ready and has
    room, to that standby (into ``result``: a move without a gap), then, by name from
    the last, tasks that want no standby, to the round robin; it keeps the rest."""
    kept = [task for task in held if task in promoted]
    others = [task for task in held if task not in promoted]
    excess = len(kept) + len(others) - share
    for task in others:
        target = standbys.nodes.get(task, node)
        ready = task in standbys.ready and target != node
        if excess > 0 and ready and room.get(target, 0) > 0:
            result[task] = target
            room[target] -= 1
            excess -= 1
    remaining = [task for task in others if task not in result]
    for task in reversed(remaining):
        if excess > 0 and task not in standbys.wanting:
            remaining.remove(task)
            excess -= 1
    return kept + remaining


def assign_standbys(
    owners: Mapping[TaskKey, str],
    nodes: Iterable[str],
    previous: Mapping[TaskKey, str],
    wanting: Iterable[TaskKey],
) -> Assignment:
    """A standby for each task of ``wanting`` that has an owner: an eligible node other
    than its owner (none when the owner is the only one). First, a node owning more than
    its share gets standbys for its excess on the nodes short of work (``_steered``).
    Then sticky: a task keeps its standby while that node is eligible, is not its owner
    and is within its share. Balanced: standby counts differ by at most one where the
    owners allow it; the rest go, one by one, to the node standing by for the fewest."""
    eligible = sorted(set(nodes))
    tasks = sorted(t for t in set(wanting) if t in owners)
    if len(eligible) < 2 or not tasks:
        return {}
    result = _steered(owners, eligible, previous, tasks)
    held: dict[str, list[TaskKey]] = {node: [] for node in eligible}
    for task in tasks:
        node = previous.get(task)
        if task not in result and node in held and node != owners[task]:
            held[node].append(task)
    count = Counter({node: 0 for node in eligible})
    count.update(result.values())
    base, extra = divmod(len(tasks), len(eligible))
    by_holdings = sorted(eligible, key=lambda node: (-len(held[node]) - count[node], node))
    share = {node: base + (1 if rank < extra else 0) for rank, node in enumerate(by_holdings)}
    for node in eligible:
        kept = held[node][: max(0, share[node] - count[node])]
        result.update(dict.fromkeys(kept, node))
        count[node] += len(kept)
    # The rest one by one to the node standing by for the fewest; ties go round a ring
    # in name order, from a point after the owner that each task draws from its name:
    # with a bare "first by name", three nodes owning one task each left one node
    # standing by for two and one for none; from the owner's next node, every standby
    # of a node's tasks was that one node, which a death or a leave then loaded with
    # all of them at once (the fleet bench: 25 promotions on one node, which then gave
    # 24 other tasks away, 74 moves for a leave of 50). (``_Levels``: a search of every
    # node per task, with ``list.index`` for the ring, took 38 s for 10,000 tasks on
    # 500 nodes: issue 18.)
    levels = _Levels(eligible, count)
    fresh = [task for task in tasks if task not in result]
    for task in fresh:
        result[task] = levels.take(owners[task], _draw(task))
    return _evened(result, owners, eligible, set(fresh))


def _evened(
    result: Assignment, owners: Mapping[TaskKey, str], nodes: list[str], movable: set[TaskKey]
) -> Assignment:
    """Standby counts within one where the owners allow it. One at a time, the least
    loaded node may be the owner of the last task left: three nodes owning one task
    each, the third task found only its own owner free, and one node stood by for two
    (a property test). Then a standby of ``movable`` (chosen this time, not kept) moves
    from the most loaded node to the least, directly if the least loaded does not own
    it, else through a third node."""
    on: dict[str, list[TaskKey]] = {node: [] for node in nodes}
    for task, node in result.items():
        on[node].append(task)
    for _ in range(len(movable)):
        high = max(nodes, key=lambda n: (len(on[n]), n))
        low = min(nodes, key=lambda n: (len(on[n]), n))
        if len(on[high]) - len(on[low]) <= 1:
            break
        mine = [t for t in on[high] if t in movable]
        direct = next((t for t in mine if owners[t] != low), None)
        if direct is not None:
            _move(direct, high, low, on, result)
            continue
        via = next(
            (
                (t, node)
                for node in nodes
                if node not in (high, low)
                for t in on[node]
                if t in movable and owners[t] != low
            ),
            None,
        )
        if via is None or not mine:
            break  # the owners do not allow it
        _move(via[0], via[1], low, on, result)
        _move(mine[0], high, via[1], on, result)
    return result


def _move(
    task: TaskKey, source: str, target: str, on: dict[str, list[TaskKey]], result: Assignment
) -> None:
    on[source].remove(task)
    on[target].append(task)
    result[task] = target


def _draw(task: TaskKey) -> int:
    """A number that each task draws from its name, the same in every process (not
    ``hash``: salted per process, and every controller must compute the same plan)."""
    return zlib.crc32(f"{task[0]}@{task[1]}".encode())


class _Levels:
    """The nodes by how many tasks they stand by for, each level in ring order: the
    least loaded node after a given one (not it) in O(levels x log nodes)."""

    def __init__(self, nodes: list[str], count: Mapping[str, int]) -> None:
        self.names = nodes
        self.position = {node: i for i, node in enumerate(nodes)}
        self.levels: dict[int, list[int]] = {}
        for i, node in enumerate(nodes):
            self.levels.setdefault(count[node], []).append(i)  # ascending: sorted

    def take(self, owner: str, draw: int) -> str:
        """The node with the fewest, not ``owner``, nearest round the ring from the point
        ``draw`` places after the owner; counted."""
        mine = self.position[owner]
        start = (mine + 1 + draw % max(1, len(self.names) - 1)) % len(self.names)
        for level in sorted(self.levels):
            ring = self.levels[level]
            at = bisect.bisect_left(ring, start)
            first_two = {ring[at % len(ring)], ring[(at + 1) % len(ring)]}
            chosen = ring[at % len(ring)] if ring[at % len(ring)] != mine else None
            if chosen is None and len(first_two) > 1:
                chosen = ring[(at + 1) % len(ring)]
            if chosen is None:
                continue
            ring.remove(chosen)
            if not ring:
                del self.levels[level]
            bisect.insort(self.levels.setdefault(level + 1, []), chosen)
            return self.names[chosen]
        raise ValueError("no node but the owner")  # callers give two or more nodes


def _steered(
    owners: Mapping[TaskKey, str],
    eligible: list[str],
    previous: Mapping[TaskKey, str],
    tasks: list[TaskKey],
) -> Assignment:
    """Standbys that let the owners even out without a loss: a node owning more than an
    even share (it was promoted, or it keeps what it could only hand over with a gap)
    gets, for as many of its tasks as it has too many, standbys on the nodes owning less
    than an even share, up to what each lacks; a task already standing by on such a node
    keeps it (it is ready, or soon will be). ``assign`` moves them there once ready."""
    load = Counter({node: 0 for node in eligible})
    load.update(owner for owner in owners.values() if owner in load)
    by_owner: dict[str, list[TaskKey]] = {}
    for task in tasks:
        by_owner.setdefault(owners[task], []).append(task)
    # The shares as ``assign`` computes them from these owners: the larger ones to the
    # nodes that hold the most.
    base, extra = divmod(sum(load.values()), len(eligible))
    by_load = sorted(eligible, key=lambda node: (-load[node], node))
    share = {node: base + (1 if rank < extra else 0) for rank, node in enumerate(by_load)}
    lacking = {node: share[node] - load[node] for node in eligible if load[node] < share[node]}
    result: Assignment = {}
    for node in eligible:
        excess = load[node] - share[node]
        mine = list(by_owner.get(node, ()))
        mine.sort(key=lambda task: previous.get(task) not in lacking)  # those first
        for task in mine[: max(0, excess)]:
            if not any(lacking.values()):
                return result
            target = previous.get(task, "")
            if lacking.get(target, 0) <= 0:
                target = max(sorted(lacking), key=lambda n: lacking[n])
            result[task] = target
            lacking[target] -= 1
    return result


def moves(before: Mapping[TaskKey, str], after: Mapping[TaskKey, str]) -> list[TaskKey]:
    """Tasks that had an owner and now have another one."""
    return sorted(t for t, owner in after.items() if before.get(t) not in (None, owner))


Silence = Mapping[str, float]  # deployment -> seconds since any of its servers answered


def cut_off(
    reports: Mapping[str, tuple[float, Silence]],
    limit: float,
    calm: MutableMapping[str, float] | None = None,
) -> dict[str, list[str]]:
    """Which nodes are cut off from which Redis deployments. ``reports``: per node, when
    it reported (on ZooKeeper's clock: its progress znode's mtime, so that no two hosts'
    clocks are compared) and how long each deployment has been silent to it.

    A node is cut off from a deployment that has been silent to it for over ``limit``
    seconds while another node heard from it more than ``limit / 2`` later: that is a
    partition of the node. When the deployment is down for everyone, every node stopped
    hearing from it at about the same moment, and no node is cut off: moving tasks
    between nodes that all wait would only add gaps.

    ``calm`` (the controller's memory, per deployment): when every node was last seen
    silent from it at once. For ``limit`` seconds after that nobody is cut off from it:
    when a deployment down for everyone comes back, the nodes hear it again a moment
    apart (a reconnect's back-off), and the last to reconnect looked partitioned from
    it (a test: both tasks of a two-node fleet moved, with new epochs, right after a
    source's SIGSTOP ended)."""
    now = max((at for at, _silence in reports.values()), default=0.0)
    deployments = {d for _at, silence in reports.values() for d in silence}
    if calm is not None and len(reports) > 1:
        for deployment in deployments:
            if all(s.get(deployment, 0.0) > limit / 2 for _at, s in reports.values()):
                calm[deployment] = now
    settling = {
        d for d in deployments if calm is not None and now - calm.get(d, float("-inf")) < limit
    }
    heard = {
        node: {deployment: at - silent for deployment, silent in silence.items()}
        for node, (at, silence) in reports.items()
    }
    result: dict[str, list[str]] = {}
    for node, (_at, silence) in reports.items():
        cut = [
            deployment
            for deployment, silent in sorted(silence.items())
            if silent > limit
            and deployment not in settling
            and any(
                other != node
                and last.get(deployment, float("-inf")) - heard[node][deployment] > limit / 2
                for other, last in heard.items()
            )
        ]
        if cut:
            result[node] = cut
    return result


def reaching(nodes: Iterable[str], cut: Mapping[str, list[str]]) -> list[str]:
    """The nodes that may run tasks: those not cut off from a deployment (all of them in
    the unlikely case that every one is)."""
    candidates = sorted(set(nodes))
    return [node for node in candidates if node not in cut] or candidates


def plan(
    tasks: Iterable[TaskKey],
    nodes: Iterable[str],
    previous: Mapping[TaskKey, str],
    previous_standbys: Mapping[TaskKey, str],
    wanting: Iterable[TaskKey],
    ready: Iterable[TaskKey] = (),
    paused_routes: Iterable[str] = (),
) -> tuple[Assignment, Assignment]:
    """Owners and standbys together: ``assign`` with the standbys in force of the tasks
    that still want one (a route reloaded with ``standby = false`` has none to move
    to), ``ready`` the tasks whose standby reports standing by; then ``assign_standbys``
    for the new owners."""
    eligible = sorted(set(nodes))
    want = frozenset(wanting)
    standbys = {task: node for task, node in previous_standbys.items() if task in want}
    in_force = Standbys(standbys, frozenset(ready) & want, want)
    owners = assign(tasks, eligible, previous, paused_routes, in_force)
    return owners, assign_standbys(owners, eligible, standbys, want)
