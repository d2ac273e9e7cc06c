"""Routes that read another deployment than [source] (``from.deployment``, issue 20):
each route's tasks are its own deployment's shards; a deployment the config does not
name is refused, naming the known ones; and two routes that carry the same names
between two deployments, one each way, are refused (every message would come back,
forever) until loop prevention is built, while two different names each way load."""

from __future__ import annotations

from pathlib import Path

from redis_forwarder.forwarding.spec import TaskSpec
from redis_forwarder.model import Address, DeploymentKind, RedisNode, Shard, Topology
from redis_forwarder.work import wanted_tasks
from tests.unit.test_config import load, problems

DEPLOYMENTS = """
[source]
kind = "standalone"
addresses = ["127.0.0.1:7000"]

[targets.east]
kind = "sentinel"
addresses = ["127.0.0.1:26400"]
masters = ["alpha", "beta"]
"""


def route(name: str, read: str, channels: str, to: str) -> str:
    return (
        f'[[route]]\nname = "{name}"\n'
        f'from = {{ deployment = "{read}", channels = [{channels}] }}\nto = {{ {to} }}\n'
    )


def test_two_ways_under_different_names_load_and_read_their_own_shards(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        DEPLOYMENTS
        + route("west-east", "source", '"orders"', 'target = "east", channel = "from-west"')
        + route("east-west", "east", '"orders"', 'channel = "from-east"'),
    )
    there, back = config.routes
    assert (there.from_.deployment, back.from_.deployment) == ("source", "east")
    assert not there.writes_to_source and not back.writes_to_source
    west = Topology(DeploymentKind.STANDALONE, (_shard("127.0.0.1:7000"),))
    east = Topology(DeploymentKind.SENTINEL, (_shard("alpha"), _shard("beta")))
    assert wanted_tasks(config.routes, {"source": west, "east": east}) == {
        ("west-east", "127.0.0.1:7000"),
        ("east-west", "alpha"),
        ("east-west", "beta"),
    }
    # A deployment not watched (yet) calls for nothing rather than the wrong shards.
    assert wanted_tasks(config.routes, {"source": west}) == {("west-east", "127.0.0.1:7000")}


def test_the_same_names_both_ways_are_refused_naming_both_routes(tmp_path: Path) -> None:
    message = problems(
        tmp_path,
        DEPLOYMENTS
        + route("west-east", "source", '"orders"', 'target = "east", channel = "orders"')
        + route("east-west", "east", '"orders"', 'channel = "{channel}"'),
    )
    assert "routes 'west-east' and 'east-west' bridge channel 'orders' both ways" in message
    assert "between 'source' and 'east'" in message and "route[1].from" in message


def test_one_way_of_a_name_is_a_chain_not_a_loop(tmp_path: Path) -> None:
    load(
        tmp_path,
        DEPLOYMENTS
        + route("west-east", "source", '"orders"', 'target = "east", channel = "orders"')
        + route("east-west", "east", '"audit"', 'channel = "audit"'),
    )


def test_an_unknown_deployment_is_named_with_the_known_ones(tmp_path: Path) -> None:
    message = problems(tmp_path, DEPLOYMENTS + route("r", "north", '"orders"', 'channel = "copy"'))
    assert "route[0].from.deployment" in message
    assert "route 'r' reads deployment 'north'" in message and "known: source, east" in message


def test_a_route_within_another_deployment_is_loop_checked_there(tmp_path: Path) -> None:
    message = problems(
        tmp_path,
        DEPLOYMENTS + route("r", "east", '"orders"', 'target = "east", channel = "orders"'),
    )
    assert "route 'r' reads channel 'orders'" in message


def test_reading_a_cluster_that_is_not_the_source_is_refused_for_now(tmp_path: Path) -> None:
    cluster = DEPLOYMENTS + '\n[targets.ring]\nkind = "cluster"\naddresses = ["127.0.0.1:7200"]\n'
    message = problems(tmp_path, cluster + route("r", "ring", '"orders"', 'channel = "copy"'))
    assert "reading a cluster other than [source] is not built yet" in message


def _shard(name: str) -> Shard:
    address = name if ":" in name else "127.0.0.1:7100"
    return Shard(name, RedisNode(Address.parse(address)), ())


def streams(name: str, read: str, to: str) -> str:
    return (
        f'[[route]]\nname = "{name}"\n'
        f'from = {{ deployment = "{read}", streams = ["events"], group = "g" }}\nto = {{ {to} }}\n'
    )


def test_the_same_streams_both_ways_load_when_both_stamp_origins(tmp_path: Path) -> None:
    both = DEPLOYMENTS + streams(
        "west-east", "source", 'target = "east", stream = "events", origin = true'
    )
    message = problems(tmp_path, both + streams("east-west", "east", 'stream = "events"'))
    assert "bridge stream 'events' both ways" in message and "to.origin = true" in message
    config = load(tmp_path, both + streams("east-west", "east", 'stream = "events", origin = true'))
    assert all(r.to.origin and r.to.max_hops == 8 for r in config.routes)


def test_origin_is_for_stream_routes_into_streams(tmp_path: Path) -> None:
    pubsub = route("r", "east", '"orders"', 'stream = "copy", origin = true')
    assert "origin stamps stream entries" in problems(tmp_path, DEPLOYMENTS + pubsub)
    into_channel = streams("r", "east", 'channel = "copy", origin = true')
    assert "origin is for stream sinks" in problems(tmp_path, DEPLOYMENTS + into_channel)


def test_a_bridge_that_cannot_be_proven_loop_free_is_refused(tmp_path: Path) -> None:
    """Over the names the matcher enumerates, {channel} may be anything: with no
    run-time guard across deployments, may is enough to refuse."""
    many = '"c:{0..99}"'
    text = (
        DEPLOYMENTS
        + route("west-east", "source", many, 'target = "east", channel = "{channel}"')
        + route("east-west", "east", many, 'channel = "{channel}"')
    )
    assert "may bridge the same names both ways" in problems(tmp_path, text)


def test_two_names_of_one_deployment_stamp_one_origin(tmp_path: Path) -> None:
    alias = DEPLOYMENTS + '\n[targets.east2]\nkind = "sentinel"\naddresses = ["127.0.0.1:26400"]\n'
    alias += 'masters = ["alpha"]\n'
    config = load(
        tmp_path,
        alias
        + streams("west-east", "source", 'target = "east", stream = "events", origin = true')
        + streams("east-west", "east2", 'stream = "events", origin = true'),
    )
    assert [r.origin_names for r in config.routes] == [("source", "east"), ("east", "source")]


def test_sentinels_watching_other_masters_are_another_deployment(tmp_path: Path) -> None:
    other = '\n[targets.south]\nkind = "sentinel"\naddresses = ["127.0.0.1:26400"]\n'
    other += 'masters = ["gamma"]\n'
    config = load(
        tmp_path, DEPLOYMENTS + other + streams("r", "east", 'target = "south", stream = "events"')
    )
    assert not config.same_deployment("east", "south")
    assert config.routes[0].writes_to_source is False


def test_many_one_way_routes_load_quickly(tmp_path: Path) -> None:
    """The bridge check compares only groups of routes that face each other (a pairwise
    pass over 1,000 routes took 3.4 s at every load)."""
    import time

    text = DEPLOYMENTS + "".join(
        route(f"r{i}", "source", f'"c{i}"', 'target = "east", channel = "copy"')
        for i in range(1000)
    )
    started = time.monotonic()
    load(tmp_path, text)
    assert time.monotonic() - started < 2.0


# MirrorMaker-style prefixes: {origin} is the identity of the deployment a route reads.
WEST = '\n[targets.west]\nkind = "standalone"\naddresses = ["127.0.0.1:7300"]\n'
PREFIXED = 'channel = "{origin}.{channel}"'


def patterns(name: str, read: str, globs: str, to: str) -> str:
    return (
        f'[[route]]\nname = "{name}"\n'
        f'from = {{ deployment = "{read}", patterns = [{globs}] }}\nto = {{ {to} }}\n'
    )


def test_origin_prefixes_both_ways_load_and_name_each_side(tmp_path: Path) -> None:
    """east carries west.orders and west carries east.orders: no name is read back."""
    config = load(
        tmp_path,
        DEPLOYMENTS
        + WEST
        + route("orders-west-east", "west", '"orders"', f'target = "east", {PREFIXED}')
        + route("orders-east-west", "east", '"orders"', f'target = "west", {PREFIXED}'),
    )
    there, back = config.routes
    assert TaskSpec(there, "127.0.0.1:7300").commands.target(b"orders", b"") == b"west.orders"
    assert TaskSpec(back, "alpha").commands.target(b"orders", b"") == b"east.orders"


def test_origin_is_the_identity_a_bridge_stamps(tmp_path: Path) -> None:
    """Two names of one deployment render one prefix, as they stamp one origin."""
    alias = '\n[targets.east2]\nkind = "sentinel"\naddresses = ["127.0.0.1:26400"]\n'
    alias += 'masters = ["alpha"]\n'
    config = load(
        tmp_path,
        DEPLOYMENTS
        + alias
        + route("orders-east-west", "east2", '"orders"', PREFIXED)
        + route("orders-west-east", "source", '"orders"', f'target = "east", {PREFIXED}'),
    )
    back, there = config.routes
    assert TaskSpec(back, "alpha").commands.target(b"orders", b"") == b"east.orders"
    assert TaskSpec(there, "127.0.0.1:7000").commands.target(b"orders", b"") == b"source.orders"


def test_reading_the_other_sides_prefix_back_is_refused(tmp_path: Path) -> None:
    """east reading '*' would read west.orders and write east.west.orders into west:
    west's messages home again (and, read again, a prefix more each round)."""
    message = problems(
        tmp_path,
        DEPLOYMENTS
        + WEST
        + route("orders-west-east", "west", '"orders"', f'target = "east", {PREFIXED}')
        + patterns("orders-east-west", "east", '"*"', f'target = "west", {PREFIXED}'),
    )
    assert "route[1].from" in message
    assert (
        "routes 'orders-west-east' and 'orders-east-west' would carry messages back where "
        "they began: 'orders-west-east' writes 'west.*' into 'east' ({origin} = 'west'); "
        "'orders-east-west' reads pattern '*' there, which matches those names"
    ) in message
    assert "read a pattern that does not match 'west.*'" in message


def test_a_pattern_clear_of_the_other_sides_prefix_loads(tmp_path: Path) -> None:
    load(
        tmp_path,
        DEPLOYMENTS
        + WEST
        + route("orders-west-east", "west", '"orders"', f'target = "east", {PREFIXED}')
        + patterns("orders-east-west", "east", '"orders*"', f'target = "west", {PREFIXED}'),
    )


def test_a_route_within_one_deployment_compares_its_own_prefix(tmp_path: Path) -> None:
    within = 'target = "east", channel = "{origin}.copy.{channel}"'
    message = problems(tmp_path, DEPLOYMENTS + patterns("r", "east", '"east.*"', within))
    assert "route 'r' reads pattern 'east.*'" in message
    load(tmp_path, DEPLOYMENTS + patterns("r", "east", '"west.*"', within))


NAMED = DEPLOYMENTS.replace(
    '[source]\nkind = "standalone"', '[source]\nname = "west"\nkind = "standalone"'
)


def test_a_deployment_named_in_its_table_is_called_so_by_every_bridge(tmp_path: Path) -> None:
    """[source] name = "west": the prefix and the origin a bridge stamps say "west",
    not this config's word for it, so another fleet's config can agree."""
    assert NAMED != DEPLOYMENTS
    config = load(
        tmp_path,
        NAMED + route("orders-west-east", "source", '"orders"', f'target = "east", {PREFIXED}'),
    )
    (there,) = config.routes
    assert there.origin_names == ("west", "east")
    assert TaskSpec(there, "127.0.0.1:7000").commands.target(b"orders", b"") == b"west.orders"


def test_one_deployment_has_one_name_and_two_deployments_two(tmp_path: Path) -> None:
    alias = '\n[targets.west2]\nname = "other"\nkind = "standalone"\n'
    alias += 'addresses = ["127.0.0.1:7000"]\n'
    message = problems(tmp_path, NAMED + alias)
    assert "[targets.west2] names its deployment 'other', but it shares an address" in message
    assert "targets.west2.name" in message
    clash = '\n[targets.far]\nname = "west"\nkind = "standalone"\naddresses = ["127.0.0.9:7000"]\n'
    message = problems(tmp_path, NAMED + clash)
    assert "[targets.far] is another deployment than the one called 'west'" in message
