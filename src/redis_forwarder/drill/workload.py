"""What a drill sends and where it reads it back, for the lab's kind of deployment.

A drill's traffic is a set of *lanes*: one channel or stream of sequence-numbered
messages each. A lane belongs to a checker route (one forwarding task's traffic, so a
healthy task cannot hide a broken one's gap) and names where its copies land, rendered
from the drill route's own sink template.

- Sentinel and standalone: on every shard, ``CHANNELS`` channels (``pubsub@SHARD``) and
  the drill stream (``stream@SHARD``), each sent to that shard's master.
- Cluster: the channels (``pubsub@cluster``: one task serves classic pub/sub on a
  cluster), each published to the master of its own slot as a cluster client would;
  and each stream of the drill stream route (``stream@KEY``), XADDed to its slot's
  owner. The sink templates may not name ``{shard}``: a stream whose slot migrates is
  copied by another shard's task afterwards, and must land in the same sink stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.errors import UsageError
from redis_forwarder.model import DeploymentKind
from redis_forwarder.routes import RouteConfig
from redis_forwarder.templates import compile_template

CHANNELS = 4
PUBSUB_PREFIX = "drill."
PUBSUB_ROUTE = "drill"
STREAM_ROUTE = "drill-streams"
DRILL_ROUTES = (PUBSUB_ROUTE, STREAM_ROUTE)
CLUSTER_LANE = "cluster"


@dataclass(frozen=True)
class Lane:
    route: str  # the checker's route: pubsub@alpha, stream@alpha, pubsub@cluster, ...
    label: str  # the checker's channel: unique over all lanes
    key: str  # the channel to PUBLISH on or the stream to XADD to
    where: str  # what the load asks where to send: a shard (Sentinel) or the key (cluster)
    sink_key: str  # the sink stream that receives this lane's copies
    sink: str  # the target name of the drill route ("source" or a [targets] name)
    stream: bool


@dataclass(frozen=True)
class Workload:
    kind: DeploymentKind
    lanes: tuple[Lane, ...]
    faulted_route: str  # the checker route whose timeline the report draws

    @property
    def by_route(self) -> dict[str, list[Lane]]:
        grouped: dict[str, list[Lane]] = {}
        for lane in self.lanes:
            grouped.setdefault(lane.route, []).append(lane)
        return grouped


def drill_routes(config: ForwarderConfig) -> tuple[RouteConfig, RouteConfig]:
    routes = {r.name: r for r in config.routes}
    missing = [name for name in DRILL_ROUTES if name not in routes]
    if missing or config.coordination is None:
        raise UsageError(
            f"the lab's forwarders lack the drill routes {missing or ''} (or [coordination]); "
            "see docs/drills.md for the two routes a drill spec needs"
        )
    pubsub, streams = routes[PUBSUB_ROUTE], routes[STREAM_ROUTE]
    if pubsub.from_.patterns != [f"{PUBSUB_PREFIX}*"] or not streams.from_.streams:
        raise UsageError(
            f'the drill routes read pattern "{PUBSUB_PREFIX}*" and at least one stream; '
            "see docs/drills.md"
        )
    for route in (pubsub, streams):
        if route.to.stream is None or not route.to.node_fields:
            raise UsageError(
                f"route {route.name!r} must write a stream with node_fields = true (the "
                "drill reads who wrote each copy); see docs/drills.md"
            )
    return pubsub, streams


def _sink_key(route: RouteConfig, shard: str, channel: str) -> str:
    assert route.to.stream is not None
    render = compile_template(route.to.stream).bind(
        shard=shard, route=route.name, origin=route.origin_names[0]
    )
    return render(channel.encode(), f"{PUBSUB_PREFIX}*".encode()).decode()


def workload(config: ForwarderConfig, shards: list[str]) -> Workload:
    """The lanes for this config; ``shards``: the Sentinel master names (or ``main``)."""
    pubsub, streams = drill_routes(config)
    kind = config.source.kind
    channels = [f"{PUBSUB_PREFIX}{index}" for index in range(CHANNELS)]
    lanes: list[Lane] = []
    if kind is DeploymentKind.CLUSTER:
        for route in (pubsub, streams):
            if "shard" in compile_template(route.to.stream or "").fields:
                raise UsageError(
                    f"route {route.name!r} writes to {route.to.stream!r}: on a cluster the "
                    "drill's sink keys may not name {shard} (see docs/drills.md)"
                )
        for channel in channels:
            lanes.append(
                Lane(
                    f"pubsub@{CLUSTER_LANE}", f"{CLUSTER_LANE}:{channel}", channel, channel,
                    _sink_key(pubsub, "", channel), pubsub.to.target, stream=False,
                )
            )  # fmt: skip
        for key in streams.from_.streams:
            lanes.append(
                Lane(
                    f"stream@{key}", key, key, key,
                    _sink_key(streams, "", key), streams.to.target, stream=True,
                )
            )  # fmt: skip
        return Workload(kind, tuple(lanes), f"pubsub@{CLUSTER_LANE}")
    for shard in shards:
        for channel in channels:
            lanes.append(
                Lane(
                    f"pubsub@{shard}", f"{shard}:{channel}", channel, shard,
                    _sink_key(pubsub, shard, channel), pubsub.to.target, stream=False,
                )
            )  # fmt: skip
        key = streams.from_.streams[0]
        lanes.append(
            Lane(
                f"stream@{shard}", f"{shard}:{key}", key, shard,
                _sink_key(streams, shard, key), streams.to.target, stream=True,
            )
        )  # fmt: skip
    return Workload(kind, tuple(lanes), f"pubsub@{shards[0]}")
