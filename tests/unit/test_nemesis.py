"""The chaos campaign's schedule (nemesis.py) and its verdict (chaos_check.py): pure."""

from __future__ import annotations

import itertools

import pytest

from redis_forwarder.drill import nemesis, sink_counts
from redis_forwarder.drill.chaos_check import Span, judge_routes, liveness_broken
from redis_forwarder.drill.checker import Received, Sent, check
from redis_forwarder.model import DeploymentKind

SHARDS = ["alpha", "beta"]
SENTINEL_KINDS = nemesis.applicable(DeploymentKind.SENTINEL, root=True)


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    first = nemesis.plan(7, 120, SENTINEL_KINDS, SHARDS)
    assert first == nemesis.plan(7, 120, SENTINEL_KINDS, SHARDS)
    assert first != nemesis.plan(8, 120, SENTINEL_KINDS, SHARDS)


@pytest.mark.parametrize("seed", range(20))
def test_a_schedule_keeps_one_fault_per_resource_and_overlaps_across_them(seed: int) -> None:
    schedule = nemesis.plan(seed, 600, SENTINEL_KINDS, SHARDS)
    assert len(schedule) >= 600 / nemesis.GAP[1] * 0.6  # waits at taken resources aside
    assert all(0 < f.at < 600 for f in schedule)
    assert [f.at for f in schedule] == sorted(f.at for f in schedule)
    taken: dict[str, float] = {}
    for fault in schedule:
        kind = nemesis.KINDS[fault.kind]
        for resource in fault.resources(SHARDS):
            assert fault.at >= taken.get(resource, 0.0) - 1e-6, f"{fault}: {resource} is taken"
            taken[resource] = fault.at + fault.hold + kind.cooldown
        assert fault.aim in kind.aims
    # Faults of different resources do overlap: that is the point of a campaign.
    spans = [(f.at, f.at + f.hold) for f in schedule]
    assert any(a[1] > b[0] for a, b in itertools.pairwise(spans))


def test_kinds_fit_the_deployment() -> None:
    cluster = nemesis.applicable(DeploymentKind.CLUSTER, root=False)
    assert "cluster-failover" in cluster and "slot-migration" in cluster
    assert "sentinel-failover" not in cluster
    assert not any(nemesis.KINDS[k].needs_root for k in cluster)
    assert "partition-redis" in SENTINEL_KINDS
    assert {f.kind for f in nemesis.plan(3, 300, ["node-kill"], SHARDS)} == {"node-kill"}
    with pytest.raises(ValueError, match="unknown fault kinds"):
        nemesis.plan(3, 60, ["node-explode"])


def _run(lost_at: list[float], route: str = "pubsub@alpha") -> tuple[list[Sent], list[Received]]:
    sent = [Sent(route, "c", n, n / 10) for n in range(1000)]  # 100 s at 10/s
    gone = {round(at * 10) for at in lost_at}
    received = [Received(route, "c", s.seq, s.at + 0.01, "n1", 5, "alpha") for s in sent]
    return sent, [r for r in received if r.seq not in gone]


def test_pubsub_loss_with_a_standby_is_allowed_only_where_redis_lost_it() -> None:
    sent, received = _run([20.0, 20.1, 50.0])
    spans = [
        Span(19.5, 30.0, "alpha", source=True),  # a failover of alpha: Redis' own loss
        Span(45.0, 55.0, "", source=False),  # a node kill: the standby must cover it
    ]
    reports = check(sent, received, 0.0)
    routes, broken = judge_routes(reports, sent, received, spans, {"pubsub@alpha"}, {})
    route = routes["pubsub@alpha"]
    assert (route.lost, route.lost_to_redis, route.lost_in_faults) == (3, 2, 3)
    assert broken == [
        "pubsub@alpha: 1 pub/sub messages lost outside the spans Redis itself lost (a route "
        "with a hot standby may lose none there)"
    ]
    assert [r["lost"] for r in route.lost_runs] == [2, 1]
    # Without a standby the node kill's span allows it; a source span of another shard
    # does not excuse this one's loss.
    _, broken = judge_routes(reports, sent, received, spans, set(), {"pubsub@alpha": "alpha"})
    assert broken == []
    other = [Span(19.5, 30.0, "beta", source=True)]
    _, broken = judge_routes(reports, sent, received, other, set(), {"pubsub@alpha": "alpha"})
    assert broken and "outside every fault" in broken[0]


def test_pubsub_loss_the_nodes_counted_at_the_sink_is_the_sinks_own() -> None:
    """Held through a node fault, written by the standby's replay as it ended, into a
    master demoted just then: outside every source span, but counted by the nodes."""
    sent, received = _run([50.0, 50.1, 50.2])
    spans = [Span(45.0, 50.5, "", source=False)]  # a node kill
    reports = check(sent, received, 0.0)
    standby = {"pubsub@alpha"}
    routes, broken = judge_routes(reports, sent, received, spans, standby, {}, 0.0, {})
    assert broken and routes["pubsub@alpha"].counted_at_sink == 0
    at_sink = {"pubsub@alpha": 2}
    routes, broken = judge_routes(reports, sent, received, spans, standby, {}, 0.0, at_sink)
    assert broken == [
        "pubsub@alpha: 3 pub/sub messages lost outside the spans Redis itself lost, 2 "
        "counted at the sink (a route with a hot standby may lose none there)"
    ]
    at_sink = {"pubsub@alpha": 3}
    routes, broken = judge_routes(reports, sent, received, spans, standby, {}, 0.0, at_sink)
    assert broken == [] and routes["pubsub@alpha"].to_json()["counted_at_sink"] == 3


def test_what_nodes_counted_at_the_sink_is_read_from_their_logs() -> None:
    lines = [
        b"2026-11-30 14:20:34,1 WARNING redis_forwarder.forwarding.metrics: drill@alpha: 603 "
        b"pub/sub messages written to the sink and never answered (the connection closed "
        b"first): at risk if the sink failed over",
        b"2026-11-30 14:20:35,1 ERROR redis_forwarder.forwarding.metrics: drill@alpha: the sink "
        b"moved from 127.0.0.1:7400 to 127.0.0.1:7401, which lacks 117 of the last 117 "
        b"entries written to 127.0.0.1:7400: lost to the sink's failover",
        b"2026-11-30 14:20:36,1 INFO redis_forwarder.forwarding.metrics: drill@beta: the sink "
        b"moved from 127.0.0.1:7410 to 127.0.0.1:7411, which has the last 40 entries written",
        b"2026-11-30 14:20:37,1 INFO redis_forwarder.node: status: 3/3 tasks forwarding",
    ]
    assert sink_counts.counted(lines) == {("drill", "alpha"): 720}


def test_a_stream_loses_nothing_and_duplicates_need_two_writers() -> None:
    sent, received = _run([], route="stream@alpha")
    again = received[5]
    twice = [*received, Received(again.route, again.channel, again.seq, 200.0, "n2", 9, "alpha")]
    same = [*received, received[6]]
    reports = check(sent, twice, 0.0)
    routes, broken = judge_routes(reports, sent, twice, [], set(), {})
    assert routes["stream@alpha"].duplicated_explained == 1 and broken == []
    reports = check(sent, same, 0.0)
    _, broken = judge_routes(reports, sent, same, [], set(), {})
    assert broken == ["stream@alpha: 1 duplicates written by the same owner (node and epoch)"]
    lost_sent, lost_received = _run([10.0], route="stream@alpha")
    reports = check(lost_sent, lost_received, 0.0)
    _, broken = judge_routes(reports, lost_sent, lost_received, [], set(), {})
    assert broken == ["stream@alpha: 1 stream entries lost (a stream route may lose none)"]


def test_liveness_names_an_exit_a_log_alarm_and_a_slow_settle() -> None:
    assert liveness_broken(2.0, "", [], {}) == []
    broken = liveness_broken(
        45.0,
        "",
        [{"at": 1.0, "process": "fwd-2", "kind": "forwarder"}, {"process": "z", "kind": "redis"}],
        {"fwd-1": ["Traceback (most recent call last):"]},
    )
    assert len(broken) == 3
    assert "settled 45.0s" in broken[0] and "fwd-2 exited" in broken[1] and "fwd-1" in broken[2]
    assert "did not settle" in liveness_broken(None, "tasks moving", [], {})[0]
