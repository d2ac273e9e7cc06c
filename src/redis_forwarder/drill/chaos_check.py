"""The verdict over a whole chaos campaign, not per fault. Pure.

Safety, per checker route (``checker.check`` counts; this module judges):

- streams lose nothing (what Redis replication itself lost is taken out before, by
  reading the source: ``sinks.split_replication_loss``);
- a pub/sub route with a hot standby loses nothing outside the spans in which Redis
  itself lost pub/sub messages: a fault of the source deployment on the route's shard,
  from its start until ``SOURCE_SETTLE`` after its heal (a message published to a
  master that dies, or to a new master before anyone is subscribed to it, is gone for
  every subscriber); and beyond that, no more than the nodes counted lost or at risk
  at the sink (``sink_counts``: held through a node fault, written when it ended into
  a sink master demoted just then). A route without a standby may lose inside any
  fault's span;
- nobody writes under an older epoch after a newer one wrote (two owners at once);
- a duplicate is *explained* when its copies were written by different owners (node
  and epoch): a takeover replaying what the dead owner wrote after its last watermark
  (issue 15); any other duplicate is a broken guarantee;
- reordering is counted and shown, not judged (a takeover's replay and a claimed
  stream entry land after newer ones).

Liveness: after the last fault heals the fleet settles within ``SETTLE_BOUND``; no
forwarder process exits unless the campaign killed or stopped it; no node logs a
traceback or "failed unexpectedly".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.drill.checker import WINDOW_SLACK, Received, RouteReport, Sent

SOURCE_SETTLE = 10.0  # seconds after a source fault's heal its shard may still lose
SETTLE_BOUND = 30.0  # seconds from the last heal until the fleet must have settled
LOST_RUN_GAP = 1.0  # seconds between two lost messages that start another run


@dataclass(frozen=True)
class Span:
    """A time span in which a route may lose pub/sub messages."""

    start: float
    end: float
    shard: str  # the source shard it hit; "" for every shard
    source: bool  # a fault of the source deployment (Redis' own pub/sub loss)

    def covers(self, at: float, shard: str) -> bool:
        return self.start - WINDOW_SLACK <= at <= self.end + WINDOW_SLACK and (
            not self.shard or not shard or self.shard == shard
        )


@dataclass
class CampaignRoute:
    route: str
    sent: int
    forwarded: int
    lost: int
    lost_to_redis: int  # lost inside a source fault's span (Redis' own loss)
    lost_in_faults: int  # lost inside any fault's span (no standby: allowed there)
    duplicated: int
    duplicated_explained: int
    reordered: int
    epoch_overlap: int
    writers: list[str]
    standby: bool
    # Where the losses fall: runs of lost messages (send times, seconds after the
    # campaign's start, at most LOST_RUN_GAP apart), each with its count and whether
    # a source fault's span covers it (what the report and the picture show).
    lost_runs: list[dict[str, Any]] = field(default_factory=list)
    # Counted by the nodes as lost, or at risk, at the sink (``sink_counts``): written
    # when a fault ended, into a master demoted just then. The sink's own loss.
    counted_at_sink: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def judge_routes(
    reports: dict[str, RouteReport],
    sent: Iterable[Sent],
    received: Iterable[Received],
    spans: list[Span],
    standby_routes: set[str],
    shard_of: dict[str, str],
    origin: float = 0.0,
    at_sink: dict[str, int] | None = None,
) -> tuple[dict[str, CampaignRoute], list[str]]:
    """Each route's numbers and what they break. ``shard_of``: a pub/sub route's source
    shard ("" when every source fault may touch it, as for classic pub/sub on a
    cluster, published to each channel's slot's master)."""
    received = list(received)
    arrived = {(r.route, r.channel, r.seq) for r in received}
    lost_at: dict[str, list[float]] = defaultdict(list)
    for message in sent:
        if (message.route, message.channel, message.seq) not in arrived:
            lost_at[message.route].append(message.at)
    explained = _explained_duplicates(received)
    routes: dict[str, CampaignRoute] = {}
    broken: list[str] = []
    for name, report in reports.items():
        shard = shard_of.get(name, "")
        times = lost_at.get(name, [])
        to_redis = sum(1 for at in times if any(s.source and s.covers(at, shard) for s in spans))
        in_faults = sum(
            1 for at in times if any(s.covers(at, shard if s.source else "") for s in spans)
        )
        route = CampaignRoute(
            name, report.sent, report.forwarded, report.lost, to_redis, in_faults,
            report.duplicated, min(report.duplicated, explained.get(name, 0)),
            report.reordered, report.epoch_overlap, report.writers, name in standby_routes,
        )  # fmt: skip
        route.lost_runs = _runs(sorted(times), spans, shard, origin)
        route.counted_at_sink = (at_sink or {}).get(name, 0)
        routes[name] = route
        broken += [f"{name}: {problem}" for problem in _route_broken(route)]
    return routes, broken


def _runs(times: list[float], spans: list[Span], shard: str, origin: float) -> list[dict[str, Any]]:
    runs: list[list[float]] = []
    for at in times:
        if runs and at - runs[-1][-1] <= LOST_RUN_GAP:
            runs[-1].append(at)
        else:
            runs.append([at])
    return [
        {
            "from": round(run[0] - origin, 2),
            "until": round(run[-1] - origin, 2),
            "lost": len(run),
            "to_redis": sum(
                1 for at in run if any(s.source and s.covers(at, shard) for s in spans)
            ),
        }
        for run in runs
    ]


def _route_broken(route: CampaignRoute) -> list[str]:
    problems: list[str] = []
    if route.route.startswith("stream@"):
        if route.lost:
            problems.append(f"{route.lost} stream entries lost (a stream route may lose none)")
    elif route.standby and route.lost > route.lost_to_redis + route.counted_at_sink:
        beyond = route.lost - route.lost_to_redis
        counted = f", {route.counted_at_sink} counted at the sink" if route.counted_at_sink else ""
        problems.append(
            f"{beyond} pub/sub messages lost outside the spans Redis itself lost{counted} "
            "(a route with a hot standby may lose none there)"
        )
    elif not route.standby and route.lost > route.lost_in_faults:
        problems.append(f"{route.lost - route.lost_in_faults} messages lost outside every fault")
    unexplained = route.duplicated - route.duplicated_explained
    if unexplained:
        problems.append(f"{unexplained} duplicates written by the same owner (node and epoch)")
    if route.epoch_overlap:
        problems.append(f"{route.epoch_overlap} writes by an older owner after a newer one")
    return problems


def _explained_duplicates(received: list[Received]) -> dict[str, int]:
    """Per route, copies beyond the first of messages whose copies came from two or
    more writers (node@epoch): a takeover's replay."""
    writers: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    for copy in received:
        writers[(copy.route, copy.channel, copy.seq)].append(f"{copy.node}@{copy.epoch}")
    explained: dict[str, int] = defaultdict(int)
    for (route, _channel, _seq), by in writers.items():
        if len(by) > 1 and len(set(by)) == len(by):
            explained[route] += len(by) - 1
    return dict(explained)


def liveness_broken(
    settled_after: float | None,
    unsettled: str,
    exits: list[dict[str, Any]],
    alarms: dict[str, list[str]],
) -> list[str]:
    problems: list[str] = []
    if settled_after is None:
        problems.append(f"the fleet did not settle after the last fault: {unsettled}")
    elif settled_after > SETTLE_BOUND:
        problems.append(
            f"the fleet settled {settled_after:.1f}s after the last fault "
            f"(bound {SETTLE_BOUND:.0f}s)"
        )
    for exit_ in exits:
        if exit_["kind"] == "forwarder":
            problems.append(f"{exit_['process']} exited on its own (the campaign did not kill it)")
    for node, lines in alarms.items():
        problems.append(f"{node} logged {len(lines)} unexpected error(s): {lines[0][:200]}")
    return problems
