"""Standbys (issue 15): each pub/sub task gets a standby on another node, balanced and
sticky, and work moves to the standby: a dead owner's task goes to its standby, and a
node over its share gives up first what a standby can take. Pure, property-tested."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from redis_forwarder.config import load_config
from redis_forwarder.coordination.assignment import (
    Assignment,
    assign,
    assign_standbys,
    moves,
    plan,
    promotions,
)
from redis_forwarder.coordination.paths import (
    assignment_document,
    assignment_of,
    standbys_of,
    standing_by_of,
)
from redis_forwarder.model import TaskKey
from redis_forwarder.routes import RouteConfig
from redis_forwarder.work import standby_tasks
from tests.support.cli import run_cli

NODES = [f"n{i}" for i in range(6)]
routes = st.sampled_from(["orders", "audit", "clicks"])
shards = st.sampled_from([f"s{i}" for i in range(8)])
tasks_strategy = st.sets(st.tuples(routes, shards), max_size=24)
nodes_strategy = st.sets(st.sampled_from(NODES), min_size=1, max_size=6)
Situation = tuple[set[TaskKey], set[str], Assignment, Assignment, set[TaskKey]]


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    """Tasks, the eligible nodes, owners and standbys in force (some on nodes since
    gone: n6, n7), and the tasks that want a standby (pub/sub ones)."""
    tasks = draw(tasks_strategy)
    nodes = draw(nodes_strategy)
    keys = st.sampled_from(sorted(tasks) or [("x", "y")])
    anyone = st.sampled_from([f"n{i}" for i in range(8)])
    previous = draw(st.dictionaries(keys, anyone))
    standbys = {
        task: node
        for task, node in draw(st.dictionaries(keys, anyone)).items()
        if previous.get(task) != node  # a standby is never its task's owner
    }
    wanting = {t for t in tasks if draw(st.booleans())}
    return tasks, nodes, previous, standbys, wanting


@settings(max_examples=400)
@given(situations())
def test_owners_complete_and_balanced_but_for_promotions(situation: Situation) -> None:
    tasks, nodes, previous, standbys, _wanting = situation
    result = assign(tasks, nodes, previous, standbys=standbys)
    assert sorted(result) == sorted(tasks)
    assert set(result.values()) <= nodes
    promoted = promotions(tasks, nodes, previous, standbys)
    # The dead owner's standby owns the task now: it holds what was published meanwhile.
    assert all(result[task] == node for task, node in promoted.items())
    loads = {n: sum(1 for owner in result.values() if owner == n) for n in nodes}
    least = min(loads.values())
    for node, load in loads.items():
        if load > least + 1:  # past balance only with what it was promoted to
            assert load == sum(1 for n in promoted.values() if n == node), (node, loads)
    if not promoted:
        assert max(loads.values()) - least <= 1
    assert assign(tasks, nodes, previous, standbys=standbys) == result  # deterministic


@settings(max_examples=300)
@given(situations())
def test_standbys_elsewhere_balanced_and_only_for_tasks_that_want_one(
    situation: Situation,
) -> None:
    tasks, nodes, previous, standbys, wanting = situation
    owners = assign(tasks, nodes, previous, standbys=standbys)
    result = assign_standbys(owners, nodes, standbys, wanting)
    if len(nodes) == 1:
        assert result == {}
        return
    assert set(result) == wanting & set(owners)
    assert all(result[task] != owners[task] for task in result)  # never the owner
    assert set(result.values()) <= nodes
    # Sticky: a task keeps its standby unless that node left, owns it now, or stands by
    # for more than its share.
    counts = {n: sum(1 for s in result.values() if s == n) for n in nodes}
    for task, node in result.items():
        before = standbys.get(task)
        if before in nodes and before != owners[task] and before != node:
            assert counts[before] >= len(result) // len(nodes), (task, before, counts)
    assert assign_standbys(owners, nodes, standbys, wanting) == result


@settings(max_examples=300)
@given(tasks_strategy, st.integers(min_value=2, max_value=6))
def test_standbys_of_a_balanced_assignment_are_balanced(tasks: set[TaskKey], n: int) -> None:
    nodes = NODES[:n]
    owners = assign(tasks, nodes, {})
    result = assign_standbys(owners, nodes, {}, tasks)
    counts = [sum(1 for s in result.values() if s == node) for node in nodes]
    assert max(counts) - min(counts) <= 1
    # And stay put when nothing changes.
    assert assign_standbys(owners, nodes, result, tasks) == result
    assert assign(tasks, nodes, owners, standbys=result) == owners


def test_one_node_has_no_standby_and_streams_want_none() -> None:
    tasks = {("orders", "a"), ("events", "a")}  # events: a stream route, not wanting one
    owners = assign(tasks, ["n1"], {})
    assert assign_standbys(owners, ["n1"], {}, tasks) == {}
    owners = assign(tasks, ["n1", "n2"], {})
    standbys = assign_standbys(owners, ["n1", "n2"], {}, {("orders", "a")})
    assert set(standbys) == {("orders", "a")}
    assert standbys[("orders", "a")] != owners[("orders", "a")]


def test_the_dead_owners_standby_takes_over_and_a_new_standby_is_chosen() -> None:
    task = ("orders", "main")
    nodes = ["n1", "n2", "n3"]
    owners = assign([task], nodes, {})
    standbys = assign_standbys(owners, nodes, {}, [task])
    owner, standby = owners[task], standbys[task]
    assert owner != standby
    alive = [n for n in nodes if n != owner]
    after = assign([task], alive, owners, standbys=standbys)
    assert after == {task: standby}  # not the round robin's pick: the standby's
    (third,) = set(alive) - {standby}
    assert assign_standbys(after, alive, standbys, [task]) == {task: third}


def test_promotion_beats_balance_then_evens_out_through_standbys() -> None:
    """n1 dies; its four tasks stood by on n2: n2 owns all four for a while (no loss
    beats balance) and gives its own task up to its standby, n3. Next time round n2 gives
    one up, to its new standby."""
    t = [("r", f"s{i}") for i in range(6)]
    previous = {t[0]: "n1", t[1]: "n1", t[2]: "n1", t[3]: "n1", t[4]: "n2", t[5]: "n3"}
    standbys = {t[0]: "n2", t[1]: "n2", t[2]: "n2", t[3]: "n2", t[4]: "n3", t[5]: "n1"}
    after = assign(t, ["n2", "n3"], previous, standbys=standbys)
    assert after == {t[0]: "n2", t[1]: "n2", t[2]: "n2", t[3]: "n2", t[4]: "n3", t[5]: "n3"}
    new_standbys = assign_standbys(after, ["n2", "n3"], standbys, t)
    assert all(new_standbys[task] == "n3" for task in after if after[task] == "n2")
    later = assign(t, ["n2", "n3"], after, standbys=new_standbys)
    assert sorted(later.values()) == ["n2"] * 3 + ["n3"] * 3
    assert all(new_standbys[task] == later[task] for task in moves(after, later))


def test_a_promotion_within_the_share_keeps_the_balance() -> None:
    """n1 dies; its two tasks stood by on n2, which owned two: n2 keeps them and gives
    one of its own up (3 and 3), not 4 and 2."""
    t = [("r", f"s{i}") for i in range(6)]
    previous = {t[0]: "n1", t[1]: "n1", t[2]: "n2", t[3]: "n2", t[4]: "n3", t[5]: "n3"}
    standbys = {t[0]: "n2", t[1]: "n2", t[2]: "n1", t[3]: "n3", t[4]: "n1", t[5]: "n2"}
    after = assign(t, ["n2", "n3"], previous, standbys=standbys)
    assert after == {t[0]: "n2", t[1]: "n2", t[2]: "n2", t[3]: "n3", t[4]: "n3", t[5]: "n3"}


def test_a_drained_owner_hands_over_to_the_standby_and_a_rebalance_prefers_standbys() -> None:
    t = [("r", f"s{i}") for i in range(4)]
    owners = assign(t, ["n1", "n2", "n3"], {})
    standbys = assign_standbys(owners, ["n1", "n2", "n3"], {}, t)
    drained = assign(t, ["n2", "n3"], owners, standbys=standbys)
    for task, owner in owners.items():
        if owner == "n1" and standbys[task] in ("n2", "n3"):
            assert drained[task] == standbys[task]
    rebalanced = assign(t, ["n1", "n2", "n3"], {}, standbys=standbys)
    assert sum(1 for task in t if rebalanced[task] == standbys[task]) >= 3


def test_a_node_over_its_share_gives_up_what_a_standby_can_take() -> None:
    """n3 joins: n1 gives up one of its two tasks, the one that n3 stands by for."""
    t = [("r", "a"), ("r", "b"), ("r", "c")]
    previous = {t[0]: "n1", t[1]: "n1", t[2]: "n2"}
    standbys = {t[0]: "n2", t[1]: "n3", t[2]: "n1"}
    after = assign(t, ["n1", "n2", "n3"], previous, standbys=standbys)
    assert after == {t[0]: "n1", t[1]: "n3", t[2]: "n2"}


def test_plan_forgets_the_standbys_of_tasks_that_no_longer_want_one() -> None:
    """A route reloaded with standby = false: its old standby is no place to move to."""
    task = ("orders", "a")
    owners, standbys = plan([task], ["n2", "n3"], {task: "n1"}, {task: "n3"}, [])
    assert standbys == {}
    assert owners == assign([task], ["n2", "n3"], {task: "n1"})
    owners, standbys = plan([task], ["n2", "n3"], {task: "n1"}, {task: "n3"}, [task])
    assert owners == {task: "n3"} and standbys == {task: "n2"}


def test_the_assignment_document_carries_the_standbys() -> None:
    owners = {("orders", "a"): "n1", ("events", "a"): "n2"}
    standbys = {("orders", "a"): "n2"}
    data = assignment_document(owners, "n1", 7, None, standbys)
    assert assignment_of(data) == (owners, 7)
    assert standbys_of(data) == standbys
    # A document written before standbys existed, or garbage, has none.
    assert standbys_of(b'{"controller": "n1", "serial": 3, "tasks": {}}') == {}
    assert standbys_of(b"not json") == {} and standbys_of(None) == {}
    assert standing_by_of({"standing_by": ["orders%40a", 3]}) == {("orders", "a")}
    assert standing_by_of({"orders@a": {}}) == set() and standing_by_of(None) == set()


def route(name: str, standby: bool | None = None, **source: object) -> RouteConfig:
    document: dict[str, object] = {"name": name, "from": source, "to": {"list": "q"}}
    if standby is not None:
        document["standby"] = standby
    return RouteConfig.model_validate(document)


def test_pubsub_routes_want_a_standby_in_a_fleet_and_streams_never() -> None:
    routes = [
        route("classic", channels=["c"]),
        route("patterns", patterns=["p.*"]),
        route("sharded", sharded=["s"]),
        route("opted-out", standby=False, channels=["o"]),
        route("streams", streams=["x"], group="g"),
    ]
    wanted = {(r.name, "main") for r in routes}
    assert standby_tasks(routes, wanted, coordinated=True) == {
        ("classic", "main"),
        ("patterns", "main"),
        ("sharded", "main"),
    }
    assert standby_tasks(routes, wanted, coordinated=False) == set()


STREAM_STANDBY = """
[source]
kind = "standalone"
addresses = ["127.0.0.1:7000"]

[[route]]
name = "ledger"
from = { streams = ["ledger"], group = "fwd" }
to = { stream = "copy:ledger" }
standby = true
"""


def test_a_standby_on_a_stream_route_is_a_config_error_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "forwarder.toml"
    config.write_text(STREAM_STANDBY)
    result = run_cli("run", "--config", str(config))
    assert result.code == 2, result.stderr
    assert "route[0].standby (line 10): route 'ledger': standby is for pub/sub" in result.stderr
    config.write_text(STREAM_STANDBY.replace("standby = true", "standby = false"))
    assert load_config(config).routes[0].wants_standby is False
