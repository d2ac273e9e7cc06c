"""The controller's side of a yield (``forwarding.yielding``): an owner that lost its
subscription reports the task yielding; the controller gives it to its standby when
that one is ready, and only then. Pure."""

from __future__ import annotations

from redis_forwarder.coordination.control import (
    YIELD_CONFIRM,
    asked_to_yield,
    confirmed,
    doubted,
    whole_groups,
)
from redis_forwarder.coordination.fleet_reads import Reports
from redis_forwarder.coordination.paths import summary, yielding_of
from redis_forwarder.coordination.progress_writer import PROGRESS_REFRESH
from redis_forwarder.coordination.together import plan_together
from redis_forwarder.forwarding.yielding import NODE_CYCLE, REPORT_REFRESH, confirm_after, wait_for
from redis_forwarder.node import CYCLE

A, B = ("orders", "a"), ("orders", "b")


def reports(yielding: dict[str, frozenset[tuple[str, str]]]) -> Reports:
    return Reports({}, {}, {}, yielding)


def test_a_progress_document_says_which_tasks_its_node_yields() -> None:
    document = {
        "orders@a": {"epoch": 3, "yielding": 1700000000.0},
        "orders@b": {"epoch": 4, "yielding": None},
        "standing_by": {"orders@c": {"state": "standby"}},
        "silent_for": {"source": 0.1},
    }
    assert yielding_of(document) == {A}
    assert yielding_of(None) == set() and yielding_of({"orders@a": 3}) == set()


def test_a_progress_document_says_which_yields_fell_silent() -> None:
    """A timeout, not a close by the server: only those wait for the standby's next
    report (``Control.confirmed``)."""
    document = {
        "orders@a": {"epoch": 3, "yielding": 1.0, "yield_silent": True},
        "orders@b": {"epoch": 4, "yielding": 2.0},
    }
    assert yielding_of(document) == {A, B}
    assert yielding_of(document, silent=True) == {A}


def test_a_yield_changes_the_summary_so_the_report_goes_out_at_once() -> None:
    before = {"orders@a": {"epoch": 3, "running": False, "state": "yielding"}}
    after = {"orders@a": {**before["orders@a"], "yielding": 1700000000.0}}
    assert summary(before) != summary(after)


def test_only_the_owners_own_yield_counts() -> None:
    owners = {A: "n1", B: "n1"}
    said = reports({"n1": frozenset({A, B}), "n2": frozenset({A})})
    assert asked_to_yield(owners, said) == {A, B}
    # A node that no longer owns the task (a stale report) asks for nothing.
    assert asked_to_yield({A: "n2"}, reports({"n1": frozenset({A})})) == set()


def test_a_yield_goes_only_to_a_standby_ready_in_a_report_after_the_confirmation() -> None:
    """Redis stopped for every node: the first owner to notice yielded to a standby
    whose report, written a moment before the yield, still said standing by; the
    standby noticed a moment later, and the task moved for nothing. A report written
    ``after`` seconds past the yield would have said so (ZooKeeper's clock)."""
    asked = {A: 100.0, B: 100.0}  # both yielded, reported at 100 s
    standbys = {A: "n2", B: "n3"}
    written = {"n2": 101.9, "n3": 102.0}
    after = {"orders": 2.0}  # the route's: its heartbeat and a cycle
    assert confirmed(asked, standbys, written, after) == {B}
    written["n2"] = 102.5  # n2's next report
    assert confirmed(asked, standbys, written, after) == {A, B}
    # A route of a slower heartbeat waits longer; a standby never heard of never confirms.
    assert confirmed(asked, standbys, written, {"orders": 6.0}) == set()
    assert confirmed(asked, standbys, {}, after) == set()


def test_a_bridge_moves_whole_or_not_at_all() -> None:
    east, west = ("to-east", "s"), ("to-west", "s")
    together = {"to-east": "bridge", "to-west": "bridge"}
    owners = {east: "n1", west: "n1", A: "n1"}
    # One direction lost its subscription; both directions' standbys are ready.
    assert whole_groups({east, A}, owners, together, {east, west, A}) == {east, west, A}
    # The other direction's standby is not ready: the group stays.
    assert whole_groups({east}, owners, together, {east}) == set()
    # Both directions yield and only one is confirmed: the other's source is another
    # Redis, whose fault its standby may share; the group waits for it.
    assert whole_groups({east}, owners, together, {east, west}, {east, west}) == set()
    assert whole_groups({east, west}, owners, together, {east, west}, {east, west}) == {
        east,
        west,
    }


def test_a_yielded_task_goes_to_its_ready_standby() -> None:
    """As the controller plans it: the yielded task's owner is no longer in
    ``previous`` (like a gone owner's), so ``promotions`` gives it to the standby;
    the node that yielded becomes its standby (two nodes)."""
    tasks, nodes = [A, B], ["n1", "n2"]
    previous = {A: "", B: "n2"}  # A yielded by n1
    owners, standbys = plan_together(tasks, nodes, previous, {A: "n2", B: "n1"}, tasks, [A, B])
    assert owners[A] == "n2" and standbys[A] == "n1"
    # n2 had B: the balance hands B to its ready standby, n1 (a lossless move).
    assert owners[B] == "n1" and standbys[B] == "n2"


def test_a_node_that_yields_is_no_ready_standby_for_a_while() -> None:
    """Its other links to that Redis may be cut too and not noticed yet: a chaos
    campaign's balance moved a task to such a standby and lost 191 messages."""
    doubt: dict[str, float] = {}
    said = reports({"n1": frozenset({A})})

    def yielders(owners: dict[tuple[str, str], str]) -> set[str]:
        return {owners[task] for task in asked_to_yield(owners, said)}  # as Control does

    assert doubted(doubt, yielders({A: "n1"}), now=100.0, hold=5.0) == {"n1"}
    # Its yield is over (the task moved): still doubted until the hold ends.
    assert doubted(doubt, set(), now=104.0, hold=5.0) == {"n1"}
    assert doubted(doubt, set(), now=105.0, hold=5.0) == set()
    # A stale report of a task the node no longer owns raises no doubt.
    assert doubted(doubt, yielders({A: "n2"}), now=106.0, hold=5.0) == set()


def test_a_task_whose_standby_is_doubted_stays_where_it_is() -> None:
    """The balance after a yield: n2 yielded A to n1 and is short of a task; B's
    standby on n2 is doubted, not ready, so B stays on n1 rather than move into the
    cut."""
    tasks, nodes = [A, B], ["n1", "n2"]
    previous = {A: "", B: "n1"}  # A yielded by n2
    standbys = {A: "n1", B: "n2"}
    owners, _ = plan_together(tasks, nodes, previous, standbys, tasks, [A])
    assert owners == {A: "n1", B: "n1"}
    # Had B's standby been taken as ready, the balance would have moved it into n2.
    owners, _ = plan_together(tasks, nodes, previous, standbys, tasks, [A, B])
    assert owners[B] == "n2"


def test_an_owner_waits_for_its_standby_past_the_confirmation_and_a_report() -> None:
    for heartbeat in (0.5, 1.0, 5.0):
        # the standby's next report comes up to a refresh and a cycle after it
        assert wait_for(heartbeat) > confirm_after(heartbeat) + REPORT_REFRESH + NODE_CYCLE
    assert confirm_after(1.0) == YIELD_CONFIRM  # the controller's default
    # The policy's copies of the node's numbers (forwarding/ does not import them).
    assert (NODE_CYCLE, REPORT_REFRESH) == (CYCLE, PROGRESS_REFRESH)
