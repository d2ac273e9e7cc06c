"""The controller's patience with an absent standby (issue 17). Pure apart from the
clock it is handed.

A pub/sub task whose owner is gone goes to its standby, the node that holds what was
published meanwhile (``assignment.promotions``). But after a ZooKeeper outage every
node's session expired, and the first node back becomes the controller before the
others have registered again: the standby is not a member yet, and the task went to
whoever was there, without the ring (a chaos campaign: 1,663 messages lost, the
standby back 50 ms later). So such a task waits, unassigned, for its standby to come
back, up to ``grace`` (a session timeout) from when this controller first missed it;
then it goes to another node as before (both the owner and its standby died: what was
published meanwhile is lost either way, and the wait adds ``grace`` to the gap).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from redis_forwarder.model import TaskKey

# A controller that did not run for this long starts its count of absences afresh:
# what it saw in an earlier reign says nothing of the standbys now.
NEW_REIGN_AFTER = 5.0


@dataclass
class StandbyWait:
    grace: float
    absent_since: dict[str, float] = field(default_factory=dict)
    last_run: float | None = None

    def held(
        self,
        tasks: Iterable[TaskKey],
        previous: Mapping[TaskKey, str],
        standbys: Mapping[TaskKey, str],
        eligible: Iterable[str],
        now: float,
    ) -> set[TaskKey]:
        """The tasks of ``tasks`` (those that want a standby) to leave unassigned now:
        their owner gone (``previous`` names one not in ``eligible``), their standby in
        force absent for less than ``grace``."""
        if self.last_run is None or now - self.last_run > NEW_REIGN_AFTER:
            self.absent_since.clear()
        self.last_run = now
        members = set(eligible)
        for node in set(standbys.values()):
            if node in members:
                self.absent_since.pop(node, None)
            else:
                self.absent_since.setdefault(node, now)
        return {
            task
            for task in tasks
            if (standby := standbys.get(task)) is not None
            and standby not in members
            and previous.get(task) is not None
            and previous[task] not in members
            and now - self.absent_since[standby] < self.grace
        }
