"""A pub/sub bridge's two directions on one node (issue 20): the controller places a
group's tasks as one, their standbys too, and a dead owner's group moves to its
standby whole; the config names the groups and refuses a one-sided suppression."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.coordination.together import plan_together
from redis_forwarder.model import TaskKey
from tests.unit.test_bridge_config import DEPLOYMENTS, route
from tests.unit.test_config import load, problems

GROUP = {"west-east": "echo:east|source", "east-west": "echo:east|source"}
BRIDGE: list[TaskKey] = [("west-east", "w"), ("east-west", "alpha"), ("east-west", "beta")]
OTHERS: list[TaskKey] = [(f"r{i}", "s") for i in range(5)]


def _on_one(assigned: dict[TaskKey, str]) -> str:
    nodes = {assigned[t] for t in BRIDGE}
    assert len(nodes) == 1, assigned
    return nodes.pop()


def test_a_group_runs_on_one_node_and_stands_by_on_another() -> None:
    tasks = BRIDGE + OTHERS
    owners, standbys = plan_together(tasks, ["n1", "n2", "n3"], {}, {}, tasks, together=GROUP)
    assert set(owners) == set(tasks)
    owner, standby = _on_one(owners), _on_one(standbys)
    assert owner != standby


def test_a_dead_owners_group_moves_to_its_standby_whole() -> None:
    tasks = BRIDGE + OTHERS
    nodes = ["n1", "n2", "n3"]
    owners, standbys = plan_together(tasks, nodes, {}, {}, tasks, together=GROUP)
    owner, standby = _on_one(owners), _on_one(standbys)
    alive = [n for n in nodes if n != owner]
    ready = set(tasks)
    after, standbys_after = plan_together(
        tasks, alive, owners, standbys, tasks, ready, together=GROUP
    )
    assert _on_one(after) == standby
    assert _on_one(standbys_after) != standby


@given(
    st.lists(st.sampled_from(["n1", "n2", "n3", "n4"]), min_size=1, max_size=4, unique=True),
    st.dictionaries(st.sampled_from(BRIDGE + OTHERS), st.sampled_from(["n1", "n2", "n3", "n4"])),
)
def test_whatever_was_before_a_group_stays_whole(
    nodes: list[str], previous: dict[TaskKey, str]
) -> None:
    tasks = BRIDGE + OTHERS
    owners, standbys = plan_together(tasks, nodes, previous, {}, tasks, together=GROUP)
    assert set(owners) == set(tasks)
    _on_one(owners)
    if len(nodes) > 1:
        assert _on_one(standbys) != _on_one(owners)


def test_a_paused_route_leaves_its_group_and_the_rest_stays_together() -> None:
    tasks = BRIDGE + OTHERS
    owners, _standbys = plan_together(
        tasks, ["n1", "n2"], {}, {}, tasks, paused_routes=["west-east"], together=GROUP
    )
    assert ("west-east", "w") not in owners
    assert owners[("east-west", "alpha")] == owners[("east-west", "beta")]


def suppressing(name: str, read: str, target: str = "") -> str:
    to = f'target = "{target}", ' if target else ""
    return route(name, read, '"orders"', f'{to}channel = "orders", echo = "suppress"')


def test_both_ways_suppressing_load_as_one_group(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        DEPLOYMENTS + suppressing("west-east", "source", "east") + suppressing("east-west", "east"),
    )
    assert config.together == {"west-east": "echo:east|source", "east-west": "echo:east|source"}


def test_suppressing_one_way_only_is_refused_with_the_way_out(tmp_path: Path) -> None:
    message = problems(
        tmp_path,
        DEPLOYMENTS
        + suppressing("west-east", "source", "east")
        + route("east-west", "east", '"other"', 'channel = "other"'),
    )
    assert "route 'west-east' sets echo = \"suppress\", but no route reads 'east'" in message
    assert "route[0].to.echo" in message


def test_echo_is_for_pub_sub_bridges_into_channels(tmp_path: Path) -> None:
    into_stream = problems(
        tmp_path,
        DEPLOYMENTS
        + route("w", "source", '"orders"', 'target = "east", stream = "s", echo = "suppress"'),
    )
    assert 'echo = "suppress" is for channel sinks' in into_stream
    within = problems(tmp_path, DEPLOYMENTS + suppressing("w", "source"))
    assert "echo suppression is for bridges between two deployments" in within
