"""Rings of bridges through three deployments (issue 20): the same names carried west
to east, east to north, north to west would go round for ever (pub/sub has no hop
count), and no pair of routes faces another: refused, naming the routes and the ring;
broken rings load."""

from __future__ import annotations

import time
from pathlib import Path

from tests.unit.test_bridge_config import route
from tests.unit.test_config import load, problems

THREE = """
[source]
name = "west"
kind = "standalone"
addresses = ["127.0.0.1:7000"]

[targets.east]
kind = "standalone"
addresses = ["127.0.0.1:7100"]

[targets.north]
kind = "standalone"
addresses = ["127.0.0.1:7200"]
"""


def ring(to_west: str = 'channel = "orders"') -> str:
    return (
        THREE
        + route("west-east", "source", '"orders"', 'target = "east", channel = "orders"')
        + route("east-north", "east", '"orders"', 'target = "north", channel = "orders"')
        + route("north-west", "north", '"orders"', to_west)
    )


def test_a_ring_of_three_deployments_is_refused_naming_it(tmp_path: Path) -> None:
    message = problems(tmp_path, ring())
    assert "routes ['west-east', 'east-north', 'north-west'] carry the same names" in message
    assert "round a ring of deployments (west -> east -> north -> west)" in message
    assert "route[2].from" in message


def test_a_ring_broken_by_a_rename_loads(tmp_path: Path) -> None:
    load(tmp_path, ring('channel = "from-north.orders"'))


def test_a_chain_without_the_last_link_loads(tmp_path: Path) -> None:
    chain = ring().split("[[route]]")
    load(tmp_path, "[[route]]".join(chain[:3]))


def test_streams_round_a_ring_load_when_they_stamp_origins(tmp_path: Path) -> None:
    def streams(name: str, read: str, target: str) -> str:
        to = f'target = "{target}", ' if target else ""
        return (
            f'[[route]]\nname = "{name}"\n'
            f'from = {{ deployment = "{read}", streams = ["s"], group = "g" }}\n'
            f'to = {{ {to}stream = "s", origin = true }}\n'
        )

    load(
        tmp_path,
        THREE
        + streams("west-east", "source", "east")
        + streams("east-north", "east", "north")
        + streams("north-west", "north", ""),
    )
    without = problems(
        tmp_path,
        THREE
        + streams("west-east", "source", "east").replace(", origin = true", "")
        + streams("east-north", "east", "north").replace(", origin = true", "")
        + streams("north-west", "north", "").replace(", origin = true", ""),
    )
    assert "round a ring of deployments" in without


def test_two_way_pairs_with_echo_suppression_are_no_ring(tmp_path: Path) -> None:
    """West and east both ways, east and north both ways, all suppressing: no message
    goes round (each direction drops what the facing one wrote)."""
    suppress = 'channel = "orders", echo = "suppress"'
    load(
        tmp_path,
        THREE
        + route("west-east", "source", '"orders"', f'target = "east", {suppress}')
        + route("east-west", "east", '"orders"', suppress)
        + route("east-north", "east", '"orders"', f'target = "north", {suppress}')
        + route("north-east", "north", '"orders"', f'target = "east", {suppress}'),
    )


def test_many_routes_without_a_ring_load_quickly(tmp_path: Path) -> None:
    """Both ways under prefixes and a third deployment read: the ring check looks only
    at ways on a ring (none here), so it adds nothing to the pair check's time."""
    routes = "".join(
        route(f"w{i}", "source", f'"c{i}"', f'target = "east", channel = "w.c{i}"')
        + route(f"e{i}", "east", f'"c{i}"', f'channel = "e.c{i}"')
        for i in range(100)
    ) + route("to-north", "east", '"x"', 'target = "north", channel = "x"')
    started = time.monotonic()
    load(tmp_path, THREE + routes)
    assert time.monotonic() - started < 5.0
