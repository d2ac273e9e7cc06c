"""Owners that died and came back (issue 17, found by chaos campaigns). Pure.

A node killed and restarted before ZooKeeper expired its old session, or a fleet whose
every session expired in a ZooKeeper outage, is a member again under a new session
while the assignment still names it the owner of its pub/sub tasks. What it held died
with its old session; the task's standby holds what was published meanwhile. Left to
the node, it took the task back itself as soon as the old session expired, with
nothing of that (576 messages lost in 3.6 s in one campaign), and the standby was
passed over.

The controller keeps, in a znode of its own (``Paths.ran``), under which session and
epoch each such task last ran, as its owner reported it (``ran_now``). A task whose owner is a
member under another session now, and does not run it under a new epoch yet, lost its
owner (``gone_owners``): it goes to its standby. Recording the members' sessions
instead (what was built first) mistook a node the controller had just promoted, read
with its expired member znode that ZooKeeper had not removed yet, for a reborn one,
and moved the task away from the ring it needed (8.4 s unaccounted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from redis_forwarder.model import TaskKey

# task -> (node, session, epoch): the owner's report that it runs the task
Ran = dict[TaskKey, tuple[str, int, int]]
# node -> (its session, task -> epoch of each task it runs), from its progress report
Running = Mapping[str, tuple[int, Mapping[TaskKey, int]]]


def gone_owners(
    owners: Mapping[TaskKey, str],
    ran: Mapping[TaskKey, tuple[str, int, int]],
    sessions: Mapping[str, int],
    running: Running,
    tasks: Iterable[TaskKey],
) -> set[TaskKey]:
    """Of ``tasks`` (those with a standby in force), the ones whose assigned owner ran
    them under a session it no longer has (``sessions``: each member's now), and does
    not run them under a new epoch since."""
    gone: set[TaskKey] = set()
    for task in tasks:
        node = owners.get(task)
        last = ran.get(task)
        if node is None or last is None or last[0] != node or node not in sessions:
            continue
        _node, session, epoch = last
        if sessions[node] == session:
            continue
        reported = running.get(node)
        if reported is not None and reported[0] == sessions[node]:
            now = reported[1].get(task)
            if now is not None and now != epoch:
                continue  # owned again under the new session: too late to move it
        gone.add(task)
    return gone


def ran_now(
    owners: Mapping[TaskKey, str],
    ran: Mapping[TaskKey, tuple[str, int, int]],
    sessions: Mapping[str, int],
    running: Running,
    tasks: Iterable[TaskKey],
) -> Ran:
    """What the next document records, for ``tasks`` (those that want a standby): the
    owner's fresh report (under the session it is a member with) that it runs the
    task, or the last record if it names the same owner. A report under a new session
    of the epoch last recorded is a task the node held through its lost session
    (``Node._hold_or_drop``), not a new ownership: the record stays, and the task is
    one of ``gone_owners``."""
    result: Ran = {}
    for task in tasks:
        node = owners.get(task)
        if not node:
            continue
        last = ran.get(task)
        reported = running.get(node)
        if reported is not None and reported[0] == sessions.get(node) and task in reported[1]:
            session, epoch = reported[0], reported[1][task]
            held_over = last is not None and last[1] != session and last[2] == epoch
            if not held_over:
                result[task] = (node, session, epoch)
                continue
        if last is not None and last[0] == node:
            result[task] = last
    return result
