"""Topology specs: the shipped ones are what the docs promise; bad ones are refused with
the key named. Pure: no sockets, no processes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_forwarder.errors import SpecError
from redis_forwarder.lab.spec import (
    CLUSTER_SLOTS,
    TopologySpec,
    listening_addresses,
    load_spec,
    parse_spec,
    validate_spec,
)
from redis_forwarder.model import DeploymentKind
from tests.support.deployments import SHIPPED_SPECS, SPECS

SENTINEL = """
name = "s"
kind = "sentinel"
[[shard]]
name = "alpha"
master = "127.0.0.1:7100"
replicas = ["127.0.0.1:7101"]
[sentinel]
addresses = ["127.0.0.1:26400", "127.0.0.1:26401", "127.0.0.1:26402"]
"""


def problems(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source="test.toml")
    message = str(caught.value)
    assert message.startswith("topology spec test.toml is not valid:")
    return message


@pytest.mark.parametrize("name", SHIPPED_SPECS)
def test_shipped_specs_parse(name: str) -> None:
    spec = load_spec(SPECS / f"{name}.toml")
    assert spec.name == name
    assert spec.zookeeper is not None


def test_shipped_specs_have_the_promised_shapes() -> None:
    sentinel = load_spec(SPECS / "sentinel.toml")
    assert sentinel.kind is DeploymentKind.SENTINEL
    assert len(sentinel.shards) >= 2 and all(len(s.replicas) == 2 for s in sentinel.shards)
    assert sentinel.sentinel is not None and len(sentinel.sentinel.addresses) == 3
    cluster = load_spec(SPECS / "cluster.toml")
    assert len(cluster.shards) == 3 and all(len(s.replicas) == 1 for s in cluster.shards)
    ensemble = load_spec(SPECS / "zk-ensemble.toml")
    assert ensemble.zookeeper is not None and len(ensemble.zookeeper.addresses) == 3


def test_forwarder_sections_are_checked() -> None:
    base = """
name = "t"
kind = "standalone"
[[shard]]
name = "main"
master = "127.0.0.1:7000"
"""
    forwarders = """
[forwarders]
nodes = [{ id = "a", metrics = "127.0.0.1:9000" }]
[[forwarders.route]]
name = "r"
from = { channels = ["c"] }
to = { list = "l" }
"""
    zookeeper = '[zookeeper]\naddresses = ["127.0.0.1:2300"]\n'
    assert "add [zookeeper]" in problems(base + forwarders)
    bad_route = forwarders.replace('to = { list = "l" }', 'to = { list = "l", sharded = true }')
    assert "route 'r'" in problems(base + zookeeper + bad_route)
    taken = forwarders.replace("9000", "7000")
    assert "used twice" in problems(base + zookeeper + taken)
    twice = forwarders.replace(
        'nodes = [{ id = "a", metrics = "127.0.0.1:9000" }]',
        'nodes = [{ id = "a", metrics = "127.0.0.1:9000" }, '
        '{ id = "a", metrics = "127.0.0.1:9001" }]',
    )
    assert "unique" in problems(base + zookeeper + twice)


def test_shipped_specs_can_run_side_by_side() -> None:
    """The README's lab and the other specs must not share a port."""
    owners: dict[object, str] = {}
    for name in SHIPPED_SPECS:
        for address, _owner in listening_addresses(load_spec(SPECS / f"{name}.toml")):
            assert address not in owners, f"{address} is in both {owners[address]} and {name}"
            owners[address] = name
            assert address.port not in (6379, 2181, 26379), "keep clear of the default ports"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 16])
def test_even_slot_split_covers_every_slot_once(count: int) -> None:
    shards = "".join(
        f'[[shard]]\nname = "s{i}"\nmaster = "127.0.0.1:{7000 + i}"\n' for i in range(count)
    )
    spec = parse_spec(f'name = "c"\nkind = "cluster"\n{shards}')
    slots = [
        s for ranges in spec.slot_ranges().values() for a, b in ranges for s in range(a, b + 1)
    ]
    assert sorted(slots) == list(range(CLUSTER_SLOTS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\nkind = "standalone"\n', "shard: required key is missing"),
        (SENTINEL + "colour = 'blue'\n", "colour: unknown key"),
        (SENTINEL.replace('kind = "sentinel"', 'kind = "galaxy"'), "kind: Input should be"),
        (SENTINEL.replace("127.0.0.1:7101", "10.0.0.1:7101"), "loopback only"),
        (SENTINEL.replace("127.0.0.1:7101", "localhost:7101"), "loopback only"),
        (SENTINEL.replace("127.0.0.1:7101", "127.0.0.1"), "is not host:port"),
        (SENTINEL.replace("127.0.0.1:7101", "127.0.0.1:99999"), "outside 1..65535"),
        (SENTINEL.replace("127.0.0.1:7101", "127.0.0.1:26400"), "is used twice"),
        (SENTINEL.replace('name = "alpha"', 'name = "has space"'), "shard[0]: name"),
        (SENTINEL.split("[sentinel]")[0], "needs a [sentinel] table"),
        (SENTINEL + "quorum = 4\n", "quorum 4 is more than the 3 sentinels"),
        (SENTINEL + "[redis.settings]\nport = 1\n", "set by the lab"),
        (SENTINEL + "[zookeeper]\naddresses = ['127.0.0.1:2300', '127.0.0.1:2301']\n", "even size"),
        (SENTINEL + '[[shard]]\nname = "alpha"\nmaster = "127.0.0.1:7200"\n', "unique"),
        ('name = "x"\nkind = [', "not valid TOML"),
    ],
)
def test_bad_specs_name_the_problem(text: str, expected: str) -> None:
    message = problems(text)
    assert expected in re.sub(r" \(line \d+\)", "", message)


CLUSTER = """
name = "c"
kind = "cluster"
[[shard]]
name = "a"
master = "127.0.0.1:7000"
slots = [[0, 8191]]
[[shard]]
name = "b"
master = "127.0.0.1:7001"
slots = [[8192, 16383]]
"""


def test_cluster_slot_rules() -> None:
    spec = parse_spec(CLUSTER)
    assert spec.slot_ranges() == {"a": ((0, 8191),), "b": ((8192, 16383),)}
    assert "given to both 'a' and 'b'" in problems(CLUSTER.replace("[[8192", "[[8191"))
    assert "1 slots have no shard (the first is 16383)" in problems(
        CLUSTER.replace("16383]]", "16382]]")
    )
    partial = CLUSTER.replace("16383]]", "16382]]") + "[cluster]\nrequire_full_coverage = false\n"
    assert parse_spec(partial).cluster_settings.require_full_coverage is False
    assert "for every cluster shard or for none" in problems(
        CLUSTER.replace("slots = [[8192, 16383]]\n", "")
    )
    # the cluster bus listens on port + 10000: it may not collide with another node
    assert "cluster bus" in problems(CLUSTER.replace("127.0.0.1:7001", "127.0.0.1:17000"))
    assert 'only for kind = "cluster"' in problems(SENTINEL + "[cluster]\n")


def test_zookeeper_ensemble_ports_are_checked() -> None:
    text = (
        SENTINEL
        + "[zookeeper]\naddresses = ['127.0.0.1:2300', '127.0.0.1:2301', '127.0.0.1:3300']\n"
    )
    assert "quorum port of zookeeper 1" in problems(text)


def test_missing_file_is_a_problems(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.toml")


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(SHIPPED_SPECS),
    path=st.lists(
        st.sampled_from(
            [
                "name",
                "kind",
                "shard",
                "sentinel",
                "zookeeper",
                "redis",
                "master",
                "replicas",
                "addresses",
                "quorum",
                "slots",
                0,
                1,
            ]
        ),
        min_size=1,
        max_size=3,
    ),
    value=toml_values,
)
def test_mutated_specs_validate_or_raise_problems(
    base: str, path: list[str | int], value: object
) -> None:
    """Whatever a spec holds, validation returns a spec or a SpecError, never a crash."""
    raw = tomllib.loads((SPECS / f"{base}.toml").read_text())
    target: Any = raw
    for step in path[:-1]:
        if _has(target, step):
            target = target[step]
    last = path[-1]
    if (isinstance(target, dict) and isinstance(last, str)) or _has(target, last):
        target[last] = value
    try:
        assert isinstance(validate_spec(raw), TopologySpec)
    except SpecError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)


def _has(container: object, key: str | int) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and key < len(container)


def test_sinks_beside_the_deployment_are_checked() -> None:
    base = """
name = "t"
kind = "standalone"
[[shard]]
name = "main"
master = "127.0.0.1:7000"
[zookeeper]
addresses = ["127.0.0.1:2300"]
[forwarders]
nodes = [{ id = "a", metrics = "127.0.0.1:9000" }]
[[forwarders.route]]
name = "r"
from = { channels = ["c"] }
to = { target = "out", list = "l" }
"""
    assert "[[sink]] tables name none" in problems(base)
    sink = '[[sink]]\nname = "out"\naddress = "127.0.0.1:7001"\n'
    assert parse_spec(base + sink).sinks[0].name == "out"
    assert "used twice" in problems(base + sink.replace("7001", "7000"))
    assert "unique" in problems(base + sink + sink.replace("7001", "7002"))


def test_a_failed_shard_is_not_also_reported_as_no_shard_at_all() -> None:
    # Issue 14: the one shard's real error was followed by "Tuple should have at least
    # 1 item", as if no [[shard]] had been written.
    text = 'name = "x"\nkind = "standalone"\n[[shard]]\nname = "a b"\nmaster = "127.0.0.1:7000"\n'
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert "shard[0] (line 3): name 'a b' must be 1-64 letters" in message
    assert "at least 1 item" not in message
    with pytest.raises(SpecError, match="shard \\(line 3\\): Tuple should have at least 1"):
        parse_spec('name = "x"\nkind = "standalone"\nshard = []\n')  # truly none: said
