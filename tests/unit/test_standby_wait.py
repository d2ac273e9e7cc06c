"""The controller's patience with an absent standby (coordination/standby_wait.py)."""

from __future__ import annotations

from redis_forwarder.coordination.standby_wait import NEW_REIGN_AFTER, StandbyWait

TASK, OTHER = ("drill", "alpha"), ("drill", "beta")


def test_a_task_of_a_gone_owner_waits_for_its_absent_standby_for_the_grace_only() -> None:
    wait = StandbyWait(grace=4.0)
    standbys = {TASK: "n2", OTHER: "n3"}
    previous = {TASK: "n1", OTHER: "n3-owner"}
    # n1 (the owner) and n2 (its standby) are gone; n3 is here.
    assert wait.held([TASK, OTHER], previous, standbys, ["n3", "n3-owner"], now=100.0) == {TASK}
    assert wait.held([TASK], previous, standbys, ["n3"], now=103.0) == {TASK}
    assert wait.held([TASK], previous, standbys, ["n3"], now=104.5) == set()  # grace over
    # Back: nothing held (the task goes to it); gone again later: a fresh grace.
    assert wait.held([TASK], previous, standbys, ["n2", "n3"], now=105.0) == set()
    assert wait.held([TASK], previous, standbys, ["n3"], now=106.0) == {TASK}


def test_no_wait_while_the_owner_lives_or_for_a_task_without_a_standby() -> None:
    wait = StandbyWait(grace=4.0)
    assert wait.held([TASK], {TASK: "n1"}, {TASK: "n2"}, ["n1"], now=1.0) == set()
    assert wait.held([TASK], {TASK: "n1"}, {}, ["n3"], now=1.0) == set()
    assert wait.held([TASK], {}, {TASK: "n2"}, ["n3"], now=1.0) == set()  # never owned


def test_a_new_reign_counts_absences_afresh() -> None:
    wait = StandbyWait(grace=4.0)
    assert wait.held([TASK], {TASK: "n1"}, {TASK: "n2"}, [], now=10.0) == {TASK}
    later = 10.0 + NEW_REIGN_AFTER + 30  # controller elsewhere meanwhile, back now
    assert wait.held([TASK], {TASK: "n1"}, {TASK: "n2"}, [], now=later) == {TASK}
