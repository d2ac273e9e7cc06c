"""The two-way bridge a ``drill bridge-loop`` drives (issue 20), found in a lab's
forwarder config, or a usage error saying what is missing. Pure.

A bridge here is two deployments A and B (one Sentinel master or standalone server
each) and four routes: pub/sub A->B and B->A reading the same channel names and
writing them under the same names with ``to.echo = "suppress"``, and streams A->B and
B->A reading the same stream name and writing it under the same name with
``to.origin = true``. ``topology/bridge.toml`` is the example.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.errors import UsageError
from redis_forwarder.model import DeploymentKind
from redis_forwarder.routes import RouteConfig
from redis_forwarder.templates import compile_template

EXAMPLE = "topology/bridge.toml"


@dataclass(frozen=True)
class Side:
    """One deployment of the bridge: its name in the config, the name bridges stamp
    (its identity: what the drill calls it too), its kind, and its one master (the
    master name on Sentinel)."""

    name: str
    identity: str
    kind: DeploymentKind
    master: str


@dataclass(frozen=True)
class Bridge:
    sides: tuple[Side, Side]
    channels: tuple[str, ...]  # bridged under the same names both ways, sorted
    stream: str  # bridged under the same name both ways
    pubsub: dict[str, RouteConfig]  # the identity of the side read -> its pub/sub route
    streams: dict[str, RouteConfig]  # the identity of the side read -> its stream route

    def side(self, identity: str) -> Side:
        return next(s for s in self.sides if s.identity == identity)

    def other(self, identity: str) -> Side:
        return next(s for s in self.sides if s.identity != identity)

    @property
    def routes(self) -> list[str]:
        return sorted(r.name for r in (*self.pubsub.values(), *self.streams.values()))


def _same_names(route: RouteConfig, names: list[str]) -> set[str]:
    """The names of ``names`` that ``route`` writes under the same name."""
    template = route.to.name_template
    render = compile_template(template).bind(
        shard="", route=route.name, origin=route.origin_names[0]
    )
    return {name for name in names if render(name.encode(), b"").decode() == name}


def _pairs(routes: list[RouteConfig], what: str) -> dict[tuple[str, str], RouteConfig]:
    """Routes of one kind, by (deployment read, deployment written): the first of each."""
    found: dict[tuple[str, str], RouteConfig] = {}
    for route in routes:
        way = (route.from_.deployment, route.to.target)
        if way[0] != way[1] and not route.writes_to_source:
            found.setdefault(way, route)
    if not found:
        raise UsageError(f"no {what} route between two deployments")
    return found


def find_bridge(config: ForwarderConfig) -> Bridge:
    """The lab's two-way bridge, or a UsageError naming what a bridge-loop needs."""
    try:
        return _find(config)
    except UsageError as exc:
        raise UsageError(
            f"drill bridge-loop needs a two-way bridge and the lab has none: {exc}. It needs "
            "two pub/sub routes, A->B and B->A, reading the same channels with to.echo = "
            '"suppress", and two stream routes, A->B and B->A, reading the same stream with '
            f"to.origin = true, each writing the names it reads (see {EXAMPLE} and "
            "docs/drills.md)"
        ) from None


def _find(config: ForwarderConfig) -> Bridge:
    pubsub = [
        r for r in config.routes
        if r.to.echo == "suppress" and r.from_.channels and not r.from_.patterns
    ]  # fmt: skip
    streams = [r for r in config.routes if r.to.origin and r.from_.streams]
    pubsub_ways = _pairs(pubsub, 'pub/sub (channels, to.echo = "suppress")')
    stream_ways = _pairs(streams, "stream (to.origin = true)")
    # [source] first: the sides in the report read as the config names them
    for (a, b), route in sorted(pubsub_ways.items(), key=lambda w: (w[0][0] != "source", w[0])):
        back = pubsub_ways.get((b, a))
        there = stream_ways.get((a, b))
        stream_back = stream_ways.get((b, a))
        if back is None or there is None or stream_back is None:
            continue
        channels = _same_names(route, route.from_.channels) & _same_names(back, back.from_.channels)
        stream_names = _same_names(there, there.from_.streams) & _same_names(
            stream_back, stream_back.from_.streams
        )
        if not channels or not stream_names:
            continue
        sides = (_side(config, a, route), _side(config, b, back))
        one, two = (side.identity for side in sides)
        return Bridge(
            sides,
            tuple(sorted(channels)),
            sorted(stream_names)[0],
            {one: route, two: back},
            {one: there, two: stream_back},
        )
    raise UsageError(
        "no two deployments with routes both ways carrying the same channel names and the "
        "same stream name"
    )


def _side(config: ForwarderConfig, name: str, reader: RouteConfig) -> Side:
    table = config.deployment(name)
    if table.kind is DeploymentKind.CLUSTER:
        raise UsageError(f"deployment {name!r} is a Redis Cluster (its sides are not drilled yet)")
    masters = list(table.masters) if table.kind is DeploymentKind.SENTINEL else ["main"]
    if len(masters) != 1:
        raise UsageError(
            f"deployment {name!r} names {len(masters)} masters; each side of the drilled "
            "bridge is one master (a route writing into a Sentinel deployment of several "
            "masters writes to one of them)"
        )
    return Side(name, reader.origin_names[0], table.kind, masters[0])
