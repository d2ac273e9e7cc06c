"""Owners that died and came back (coordination/reborn.py, issue 17): pure."""

from __future__ import annotations

from redis_forwarder.coordination.reborn import gone_owners, ran_now


def test_an_owner_back_under_a_new_session_loses_its_tasks_to_their_standbys() -> None:
    task, other = ("drill", "alpha"), ("drill", "beta")
    owners = {task: "n1", other: "n2"}
    ran = {task: ("n1", 100, 7), other: ("n2", 200, 8)}
    tasks = [task, other]
    same = {"n1": (100, {task: 7}), "n2": (200, {other: 8})}
    assert gone_owners(owners, ran, {"n1": 100, "n2": 200}, same, tasks) == set()
    # n1 is back under session 101: it ran the task under 100 and holds it still (the
    # same epoch, reported under the new session) or not at all: gone.
    held = {"n1": (101, {task: 7})}
    assert gone_owners(owners, ran, {"n1": 101, "n2": 200}, held, tasks) == {task}
    assert gone_owners(owners, ran, {"n1": 101, "n2": 200}, {}, tasks) == {task}
    # Owned again under a new epoch already: too late to move.
    again = {"n1": (101, {task: 9})}
    assert gone_owners(owners, ran, {"n1": 101, "n2": 200}, again, tasks) == set()
    # A task given to n1 that n1 never ran (recorded under another node): not gone.
    moved = {task: ("n3", 300, 5)}
    assert gone_owners(owners, moved, {"n1": 101}, {}, [task]) == set()
    # The record: a fresh report is taken, a held-over one (new session, old epoch) not.
    assert ran_now(owners, {}, {"n1": 100}, {"n1": (100, {task: 7})}, [task]) == {
        task: ("n1", 100, 7)
    }
    assert ran_now(owners, ran, {"n1": 101}, held, [task]) == {task: ("n1", 100, 7)}
    assert ran_now(owners, ran, {"n1": 101}, again, [task]) == {task: ("n1", 101, 9)}
    assert ran_now({task: ""}, ran, {}, {}, [task]) == {}  # waiting for its standby
