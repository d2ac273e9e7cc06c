"""Rings of bridges through three deployments or more (issue 20). Pure.

``bridges.bridge_loop_check`` compares routes that face each other (A to B, B to A).
A ring needs no such pair: west to east, east to north, north to west carrying the
same channel forwards every message round for ever, and a pub/sub message carries no
hop count to stop it. So the routes are a graph: an edge from a route to another when
the first writes into the deployment the second reads, into names it reads (the same
proof as the pair check: ``route_loops.feeds``, UNKNOWN counting as an edge), and a
cycle is refused. Edges that a policy breaks are left out: a route that stamps origins
(``to.origin``: an entry stops where it began, and at the hop limit), and a route
that drops the echoes of the one facing it (``to.echo``: what that one wrote goes no
further this way). Routes within one deployment are the per-route check's.

Only routes whose way lies on a cycle of three deployments or more are looked at,
and ``feeds`` is asked once per edge: a config without a ring of deployments costs a
pass over its routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from redis_forwarder.globs import Overlap
from redis_forwarder.route_loops import feeds
from redis_forwarder.validation import Located

if TYPE_CHECKING:
    from redis_forwarder.routes import RouteConfig

Way = tuple[str, str]  # (identity read, identity written)


def ring_check(
    routes: list[RouteConfig], identity: Mapping[str, str], shards: Mapping[str, list[str] | None]
) -> None:
    """Refuse a cycle of routes through three deployments or more."""
    ways = {
        index: (identity[r.from_.deployment], identity[r.to.target])
        for index, r in enumerate(routes)
        if not r.to.origin
    }
    ways = {i: w for i, w in ways.items() if w[0] != w[1]}
    graph = set(ways.values())
    ringed = {way for way in graph if _on_a_ring(graph, *way)}
    candidates = [i for i, w in ways.items() if w in ringed]
    if not candidates:
        return
    reading: dict[str, list[int]] = {}
    for index in candidates:
        reading.setdefault(ways[index][0], []).append(index)

    def edges(index: int) -> list[int]:
        one = routes[index]
        return [
            other
            for other in reading.get(ways[index][1], [])
            if not _faces_with_echoes(one, ways[index], routes[other], ways[other])
            and feeds(one, routes[other], shards[one.from_.deployment])[0] is not Overlap.NO
        ]

    cycle = _a_cycle(candidates, edges)
    if cycle is not None:
        names = [routes[i].name for i in cycle]
        path = " -> ".join([*(ways[i][0] for i in cycle), ways[cycle[0]][0]])
        raise Located(
            ("route", max(cycle), "from"),
            f"routes {names} carry the same names round a ring of deployments ({path}): "
            "each message would go round for ever, and a pub/sub message has no hop "
            "count to stop it. Break the ring: rename on one route (a prefix the next "
            "one does not read), leave one route out, or, for streams, set "
            "to.origin = true on the routes",
        )


def _faces_with_echoes(one: RouteConfig, way: Way, other: RouteConfig, back: Way) -> bool:
    """``other`` writes back where ``one`` reads, and both drop each other's echoes."""
    facing = back == (way[1], way[0])
    return facing and one.to.echo == "suppress" and other.to.echo == "suppress"


def _on_a_ring(ways: set[Way], a: str, b: str) -> bool:
    """The way from ``a`` to ``b`` lies on a cycle of three deployments or more: from
    ``b`` back to ``a`` through a third one (a back and forth is the pair check's)."""
    return any(a in _reachable(ways, c, avoid=b) for x, c in ways if x == b and c != a)


def _reachable(ways: set[Way], start: str, avoid: str | None = None) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for a, b in ways:
            if a == here and b not in seen and b != avoid:
                seen.add(b)
                todo.append(b)
    return seen


def _a_cycle(nodes: list[int], edges_of: Callable[[int], list[int]]) -> list[int] | None:
    """A directed cycle among ``nodes`` (depth first, each edge list asked once)."""
    state: dict[int, int] = {}  # 1: on the path, 2: done
    path: list[int] = []
    for root in nodes:
        if root in state:
            continue
        stack: list[tuple[int, list[int]]] = [(root, edges_of(root))]
        state[root], path = 1, [root]
        while stack:
            node, left = stack[-1]
            if not left:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = left.pop()
            if state.get(nxt) == 1:
                return path[path.index(nxt) :]
            if nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, edges_of(nxt)))
    return None
