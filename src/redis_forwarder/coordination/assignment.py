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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from redis_forwarder.model import TaskKey

Assignment = dict[TaskKey, str]  # task -> node id


def assign(
    tasks: Iterable[TaskKey],
    nodes: Iterable[str],
    previous: Mapping[TaskKey, str],
    paused_routes: Iterable[str] = (),
) -> Assignment:
    """The new assignment of ``tasks`` to ``nodes`` (the eligible ones only)."""
    paused = set(paused_routes)
    wanted = sorted(t for t in set(tasks) if t[0] not in paused)
    eligible = sorted(set(nodes))
    if not eligible or not wanted:
        return {}
    held: dict[str, list[TaskKey]] = {node: [] for node in eligible}
    for task in wanted:
        owner = previous.get(task)
        if owner is not None and owner in held:
            held[owner].append(task)
    base, extra = divmod(len(wanted), len(eligible))
    # The larger shares go to the nodes that hold the most already: fewest moves.
    by_holdings = sorted(eligible, key=lambda node: (-len(held[node]), node))
    share = {node: base + (1 if rank < extra else 0) for rank, node in enumerate(by_holdings)}
    result: Assignment = {}
    for node in eligible:
        for task in held[node][: share[node]]:
            result[task] = node
    room = {node: share[node] - min(share[node], len(held[node])) for node in eligible}
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


def moves(before: Mapping[TaskKey, str], after: Mapping[TaskKey, str]) -> list[TaskKey]:
    """Tasks that had an owner and now have another one."""
    return sorted(t for t, owner in after.items() if before.get(t) not in (None, owner))


Silence = Mapping[str, float]  # deployment -> seconds since any of its servers answered


def cut_off(reports: Mapping[str, tuple[float, Silence]], limit: float) -> dict[str, list[str]]:
    """Which nodes are cut off from which Redis deployments. ``reports``: per node, when
    it reported (on ZooKeeper's clock: its progress znode's mtime, so that no two hosts'
    clocks are compared) and how long each deployment has been silent to it.

    A node is cut off from a deployment that has been silent to it for over ``limit``
    seconds while another node heard from it more than ``limit / 2`` later: that is a
    partition of the node. When the deployment is down for everyone, every node stopped
    hearing from it at about the same moment, and no node is cut off: moving tasks
    between nodes that all wait would only add gaps."""
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
