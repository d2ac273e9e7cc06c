"""Which tasks a topology calls for. Pure."""

from __future__ import annotations

from redis_forwarder.model import Address, DeploymentKind, RedisNode, Shard, Topology
from redis_forwarder.routes import RouteConfig
from redis_forwarder.topology.slots import key_slot
from redis_forwarder.work import keys_served, slot_groups, wanted_tasks


def route(name: str, **source: object) -> RouteConfig:
    return RouteConfig.model_validate({"name": name, "from": source, "to": {"list": "q"}})


def node(port: int) -> RedisNode:
    return RedisNode(Address("127.0.0.1", port))


CLUSTER = Topology(
    DeploymentKind.CLUSTER,
    (
        Shard("a", node(7000), slots=((0, 8191),)),
        Shard("b", node(7001), slots=((8192, 16383),)),
    ),
)
SENTINEL = Topology(
    DeploymentKind.SENTINEL, (Shard("alpha", node(7100)), Shard("beta", node(7110)))
)


def test_classic_pubsub_is_one_task_on_a_cluster_and_one_per_master_elsewhere() -> None:
    routes = [route("c", patterns=["x.*"])]
    assert wanted_tasks(routes, CLUSTER) == {("c", "a")}
    assert wanted_tasks(routes, SENTINEL) == {("c", "alpha"), ("c", "beta")}


def test_sharded_tasks_follow_the_slots() -> None:
    channels = [f"s:{i}" for i in range(20)]
    sharded = route("s", sharded=channels)
    on_a = [c for c in channels if key_slot(c) <= 8191]
    assert keys_served(sharded, "a", CLUSTER) == on_a
    assert sorted(
        keys_served(sharded, "a", CLUSTER) + keys_served(sharded, "b", CLUSTER)
    ) == sorted(channels)
    only_b = route("s", sharded=[c for c in channels if c not in on_a])
    assert wanted_tasks([only_b], CLUSTER) == {("s", "b")}
    assert keys_served(sharded, "alpha", SENTINEL) == channels


def test_streams_are_per_shard_and_no_topology_no_tasks() -> None:
    streams = route("t", streams=["s"], group="g")
    assert wanted_tasks([streams], SENTINEL) == {("t", "alpha"), ("t", "beta")}
    assert wanted_tasks([streams], Topology(DeploymentKind.SENTINEL, ())) == set()


def test_cluster_streams_go_to_the_shards_that_hold_them_grouped_by_slot() -> None:
    names = ["{orders}:eu", "{orders}:us", "audit", "clicks"]
    streams = route("t", streams=names, group="g")
    on_a = [n for n in names if key_slot(n) <= 8191]
    on_b = [n for n in names if key_slot(n) > 8191]
    assert keys_served(streams, "a", CLUSTER) == on_a
    assert keys_served(streams, "b", CLUSTER) == on_b
    holders = {shard for shard, keys in (("a", on_a), ("b", on_b)) if keys}
    assert wanted_tasks([streams], CLUSTER) == {("t", shard) for shard in holders}
    groups = slot_groups(names, cluster=True)
    assert ["{orders}:eu", "{orders}:us"] in groups  # one hash tag: one XREADGROUP
    assert sorted(k for g in groups for k in g) == sorted(names)
    assert all(len({key_slot(k) for k in g}) == 1 for g in groups)
    assert slot_groups(names, cluster=False) == [names]
    assert slot_groups([], cluster=True) == []


def test_a_task_survives_an_unexpected_error() -> None:
    """A bug in one pass (here: the locator raising) is a logged gap, not a dead task;
    and a stop ends it for good, from any state."""
    import asyncio

    from redis_forwarder.forwarding.placement import Endpoint, Placement
    from redis_forwarder.forwarding.spec import TaskSpec
    from redis_forwarder.forwarding.states import TaskState
    from redis_forwarder.forwarding.supervisor import Task
    from redis_forwarder.observe import Metrics

    calls: list[str] = []

    def broken(_avoid: frozenset[Address]) -> Endpoint:
        calls.append("x")
        raise RuntimeError("boom")

    async def scenario() -> Task:
        placement = Placement(broken, broken, on_lost=calls.append)
        task = Task(TaskSpec(route("c", channels=["a"]), "s"), placement, Metrics())
        task.start()
        while len([c for c in calls if c == "x"]) < 2:  # it came back for a second try
            await asyncio.sleep(0.01)
        await task.stop(graceful=True)
        return task

    task = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert task.gaps and "unexpected RuntimeError: boom" in task.gaps[0].reason
    assert task.state is TaskState.STOPPED
