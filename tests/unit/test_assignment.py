"""The assignment of tasks to nodes: complete, balanced, sticky. Pure, property-tested."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from redis_forwarder.coordination.assignment import (
    Assignment,
    assign,
    cut_off,
    moves,
    reaching,
)
from redis_forwarder.coordination.paths import silence_of
from redis_forwarder.model import TaskKey

routes = st.sampled_from(["orders", "audit", "clicks"])
shards = st.sampled_from([f"s{i}" for i in range(8)])
tasks_strategy = st.sets(st.tuples(routes, shards), max_size=24)
nodes_strategy = st.sets(st.sampled_from([f"n{i}" for i in range(6)]), max_size=6)


@st.composite
def situations(draw: st.DrawFn) -> tuple[set[TaskKey], set[str], Assignment, set[str]]:
    tasks = draw(tasks_strategy)
    nodes = draw(nodes_strategy)
    # The assignment in force: some tasks, owned by any node (some since gone).
    owners = st.sampled_from([f"n{i}" for i in range(8)])
    previous = draw(st.dictionaries(st.sampled_from(sorted(tasks) or [("x", "y")]), owners))
    paused = draw(st.sets(routes, max_size=1))
    return tasks, nodes, previous, paused


def minimal_moves(tasks: list[TaskKey], nodes: list[str], previous: Assignment) -> int:
    """The fewest moves any balanced assignment needs: a node keeps at most its share,
    and the larger shares are best given to the nodes holding the most."""
    held = sorted((sum(1 for t in tasks if previous.get(t) == n) for n in nodes), reverse=True)
    base, extra = divmod(len(tasks), len(nodes))
    return sum(max(0, h - (base + (1 if i < extra else 0))) for i, h in enumerate(held))


@settings(max_examples=300)
@given(situations())
def test_complete_balanced_and_sticky(
    situation: tuple[set[TaskKey], set[str], Assignment, set[str]],
) -> None:
    tasks, nodes, previous, paused = situation
    result = assign(tasks, nodes, previous, paused)
    runnable = sorted(t for t in tasks if t[0] not in paused)
    if not nodes:
        assert result == {}
        return
    # Every runnable task exactly once (a dict: once), only eligible nodes, nothing paused.
    assert sorted(result) == runnable
    assert set(result.values()) <= nodes
    loads = [sum(1 for owner in result.values() if owner == n) for n in nodes]
    assert max(loads) - min(loads) <= 1
    assert len(moves(previous, result)) - sum(
        1 for t in runnable if previous.get(t) not in (None, *nodes)
    ) == minimal_moves(runnable, sorted(nodes), previous)
    assert assign(tasks, nodes, previous, paused) == result  # deterministic


@given(tasks_strategy.filter(lambda t: len(t) >= 6))
def test_a_join_moves_only_what_the_newcomer_takes(tasks: set[TaskKey]) -> None:
    before = assign(tasks, ["a", "b"], {})
    after = assign(tasks, ["a", "b", "c"], before)
    moved = moves(before, after)
    assert all(after[t] == "c" for t in moved)
    assert len(moved) == len(tasks) // 3


@given(tasks_strategy.filter(lambda t: len(t) >= 3))
def test_a_leave_moves_only_the_leavers_tasks(tasks: set[TaskKey]) -> None:
    before = assign(tasks, ["a", "b", "c"], {})
    after = assign(tasks, ["a", "b"], before)
    assert {t for t in tasks if before[t] != after[t]} == {t for t in tasks if before[t] == "c"}


def test_new_tasks_spread_round_robin_and_drained_nodes_get_none() -> None:
    tasks = {("orders", s) for s in ("a", "b", "c", "d")}
    result = assign(tasks, ["n1", "n2"], {})
    assert sorted(result.values()) == ["n1", "n1", "n2", "n2"]
    assert result[("orders", "a")] != result[("orders", "b")]
    # A drained node is simply not eligible: its tasks move, the rest stay.
    drained = assign(tasks, ["n2"], result)
    assert set(drained.values()) == {"n2"}


def test_a_node_partitioned_from_redis_is_cut_off_and_gets_nothing() -> None:
    """n1 last heard from the source 8 s ago, the others a moment ago: a partition."""
    reports = {
        "n1": (1000.0, {"source": 8.0}),
        "n2": (1000.3, {"source": 0.3}),
        "n3": (999.9, {"source": 0.5}),
    }
    cut = cut_off(reports, limit=5)
    assert cut == {"n1": ["source"]}
    previous = {("r", "a"): "n1", ("r", "b"): "n2"}
    new = assign([("r", "a"), ("r", "b")], reaching(["n1", "n2", "n3"], cut), previous)
    assert new == {("r", "a"): "n3", ("r", "b"): "n2"}


def test_a_deployment_down_for_every_node_cuts_no_node_off() -> None:
    """Every node stopped hearing at about the same moment (within a refresh); some
    noticed past the limit a cycle before the others. Moving tasks would only add gaps."""
    reports = {
        "n1": (1000.0, {"source": 7.1}),
        "n2": (1000.9, {"source": 7.6}),  # heard 0.4 s after n1 did
        "n3": (1000.2, {"source": 4.9}),  # not past the limit yet
    }
    assert cut_off(reports, limit=5) == {}
    assert reaching(["n1", "n2"], {"n1": ["source"], "n2": ["source"]}) == ["n1", "n2"]


def test_who_reconnects_last_after_an_outage_for_everyone_is_not_cut_off() -> None:
    """The source was down for both nodes; n2 has heard it again, n1's reconnect is a
    back-off behind. Without the controller's memory of the outage n1 looks partitioned
    (a test moved both tasks, with new epochs, right after a SIGSTOP ended); with it,
    nobody is cut off for the limit after everyone was silent, and a partition that
    outlasts that is seen again."""
    calm: dict[str, float] = {}
    during = {"n1": (1000.0, {"source": 8.0}), "n2": (1000.1, {"source": 8.1})}
    assert cut_off(during, limit=5, calm=calm) == {} and calm == {"source": 1000.1}
    after = {"n1": (1002.0, {"source": 10.0}), "n2": (1002.1, {"source": 0.2})}
    assert cut_off(after, limit=5) == {"n1": ["source"]}  # no memory: the race
    assert cut_off(after, limit=5, calm=calm) == {}
    still = {"n1": (1005.5, {"source": 13.5}), "n2": (1005.6, {"source": 0.1})}
    assert cut_off(still, limit=5, calm=calm) == {"n1": ["source"]}  # a partition after all


def test_silence_is_per_deployment_and_a_node_that_says_nothing_is_not_cut_off() -> None:
    reports = {
        "n1": (1000.0, {"source": 0.2, "sink": 9.0}),
        "n2": (1000.0, {"source": 9.0, "sink": 9.0}),
        "n3": (1000.0, {"source": 0.1, "sink": 0.1}),
    }
    assert cut_off(reports, limit=5) == {"n1": ["sink"], "n2": ["sink", "source"]}
    assert cut_off({"n1": (1000.0, {"source": 9.0})}, limit=5) == {}


def test_a_progress_document_without_a_readable_silence_says_nothing() -> None:
    assert silence_of({"silent_for": {"source": 0.5}, "r@a": {}}) == {"source": 0.5}
    document: object
    for document in (None, [], {}, {"silent_for": "x"}, {"silent_for": {"source": "soon"}}):
        assert silence_of(document) == {}
