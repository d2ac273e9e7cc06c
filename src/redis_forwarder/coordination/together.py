"""Tasks that run on one node: a pub/sub bridge's two directions (issue 20). Pure.

Echo suppression (``forwarding/echoes.py``) needs the task that publishes into a
deployment's channels and the task that reads them there to share one node's ledger,
and a takeover to move them together (their standbys on one node too). ``together``
maps a route to its group's name (``bridge_echoes.echo_groups``); every task of a group's
routes is one unit here: the group's first task (by name) stands for it in ``plan``,
and its owner and standby become every member's.

So a group counts as one task in the balance: bridges are few, and a group's load is
its traffic, not its task count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from redis_forwarder.coordination.assignment import Assignment, plan
from redis_forwarder.model import TaskKey


def plan_together(
    tasks: Iterable[TaskKey],
    nodes: Iterable[str],
    previous: Mapping[TaskKey, str],
    previous_standbys: Mapping[TaskKey, str],
    wanting: Iterable[TaskKey],
    ready: Iterable[TaskKey] = (),
    paused_routes: Iterable[str] = (),
    together: Mapping[str, str] | None = None,
) -> tuple[Assignment, Assignment]:
    """``assignment.plan`` with each group of ``together`` placed as one task."""
    paused = set(paused_routes)
    wanted = sorted(t for t in set(tasks) if t[0] not in paused)
    want, ready_now = set(wanting), set(ready)
    if not together:
        return plan(wanted, nodes, previous, previous_standbys, want, ready_now)
    members = _groups(wanted, together)
    leader = {task: group[0] for group in members for task in group}
    owners_before = dict(previous)
    standbys_before = dict(previous_standbys)
    for group in members:
        first = group[0]
        for before, source in ((owners_before, previous), (standbys_before, previous_standbys)):
            where = _first(source, group)
            if where is not None:
                before[first] = where
        wanting_ones = [t for t in group if t in want]
        if wanting_ones:
            want.add(first)
            if all(t in ready_now for t in wanting_ones):
                ready_now.add(first)
            else:
                ready_now.discard(first)
    alone = [t for t in wanted if leader.get(t, t) == t]
    owners, standbys = plan(
        alone,
        nodes,
        owners_before,
        standbys_before,
        want & set(alone),
        ready_now & set(alone),
    )
    wanted_standby = set(wanting)
    for task, first in leader.items():
        if first in owners:
            owners[task] = owners[first]
        if first in standbys and task in wanted_standby:
            standbys[task] = standbys[first]
    for task in [t for t in standbys if t not in wanted_standby]:
        del standbys[task]  # a group's first task stood in for a member that wants one
    return owners, standbys


def _groups(wanted: list[TaskKey], together: Mapping[str, str]) -> list[list[TaskKey]]:
    """The wanted tasks of each group, sorted; groups of one task are no groups."""
    found: dict[str, list[TaskKey]] = {}
    for task in wanted:  # sorted: each group's list is too
        group = together.get(task[0])
        if group is not None:
            found.setdefault(group, []).append(task)
    return [tasks for tasks in found.values() if len(tasks) > 1]


def _first(assigned: Mapping[TaskKey, str], group: list[TaskKey]) -> str | None:
    """Where the group was: its first task's node, or a member's ("" too: the owner
    died, to its standby), or None."""
    return next((assigned[t] for t in group if t in assigned), None)
