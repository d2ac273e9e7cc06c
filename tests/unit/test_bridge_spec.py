"""A lab of two deployments behind one set of sentinels (issue 20's bridges):
``[forwarders] source_masters`` and ``target_masters`` give the nodes' [source] some
of the spec's masters and a [targets.NAME] the others; the shipped ``bridge`` spec's
config loads with two deployments of their own, and every mistake is named. Pure."""

from __future__ import annotations

import tomllib

import pytest

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.errors import SpecError
from redis_forwarder.lab.forwarders import node_config, to_toml
from redis_forwarder.lab.spec import TopologySpec, load_spec, parse_spec
from tests.support.deployments import SPECS

BASE = """
name = "b"
kind = "sentinel"
[[shard]]
name = "west"
master = "127.0.0.1:7100"
[[shard]]
name = "east"
master = "127.0.0.1:7110"
[sentinel]
addresses = ["127.0.0.1:26400", "127.0.0.1:26401", "127.0.0.1:26402"]
[zookeeper]
addresses = ["127.0.0.1:2300"]
[forwarders]
nodes = [{ id = "a", metrics = "127.0.0.1:9000" }]
source_masters = ["west"]
target_masters = { east = ["east"] }
[[forwarders.route]]
name = "r"
from = { deployment = "east", channels = ["c"] }
to = { channel = "d" }
"""


def config_of(spec: TopologySpec) -> ForwarderConfig:
    assert spec.forwarders is not None
    text = to_toml(node_config(spec, spec.forwarders.nodes[0]))
    return ForwarderConfig.model_validate(tomllib.loads(text))


def problems(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source="test.toml")
    return str(caught.value)


def test_the_bridge_spec_makes_two_deployments_of_one_sentinel_set() -> None:
    spec = load_spec(SPECS / "bridge.toml")
    config = config_of(spec)
    assert config.source.masters == ["west"] and config.source.name == "west"
    east = config.targets["east"]
    assert east.masters == ["east"] and east.addresses == config.source.addresses
    assert not config.same_deployment("source", "east")
    pubsub = [r.name for r in config.routes if r.to.echo == "suppress"]
    assert sorted(pubsub) == ["bridge-east-west", "bridge-west-east"]
    assert set(config.together) == set(pubsub)  # one node runs both directions
    assert all(r.to.origin for r in config.routes if r.from_.streams)


def test_without_the_options_source_watches_every_master() -> None:
    text = BASE.replace('source_masters = ["west"]\n', "").replace(
        'target_masters = { east = ["east"] }\n', ""
    )
    text = text.replace('deployment = "east", ', "")
    config = config_of(parse_spec(text))
    assert config.source.masters == ["west", "east"] and config.targets == {}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('source_masters = ["west"]', 'source_masters = ["wets"]'), "names ['wets'], not masters"),
        (('east = ["east"]', 'east = ["west"]'), "'west' is named by source_masters and"),
        (('east = ["east"]', "east = []"), "name at least one master"),
        (('{ east = ["east"] }', '{ source = ["east"] }'), 'not "source"'),
        (('{ east = ["east"] }', '{ "9x" = ["east"] }'), "'9x' must be 1-32 letters"),
        (('source_masters = ["west"]\n', ""), "give source_masters too"),
        (('deployment = "east"', 'deployment = "north"'), "route 'r' reads 'north'"),
        (('channel = "d"', 'target = "north", channel = "d"'), "writes to target 'north'"),
    ],
)
def test_mistakes_are_named(change: tuple[str, str], expected: str) -> None:
    assert change[0] in BASE
    assert expected in problems(BASE.replace(*change))


def test_only_a_sentinel_spec_names_masters() -> None:
    text = """
name = "s"
kind = "standalone"
[[shard]]
name = "main"
master = "127.0.0.1:7100"
[zookeeper]
addresses = ["127.0.0.1:2300"]
[forwarders]
nodes = [{ id = "a", metrics = "127.0.0.1:9000" }]
source_masters = ["main"]
[[forwarders.route]]
name = "r"
from = { channels = ["c"] }
to = { channel = "d" }
"""
    assert "for kind = \"sentinel\", not 'standalone'" in problems(text)


def test_a_target_and_a_sink_may_not_share_a_name() -> None:
    text = BASE + '[[sink]]\nname = "east"\naddress = "127.0.0.1:7200"\n'
    assert "both a [[sink]] and a target_masters name" in problems(text)
