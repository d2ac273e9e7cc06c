"""An owner of a pub/sub task with a standby whose subscription is lost does not just
resubscribe: what was published until it is back is lost to it, and its standby heard
it (a chaos campaign: 796 messages waiting in a subscription that a Sentinel failover
closed; ``partition-redis`` with a short hold: 500 per route). It *yields*
(:class:`Yield`): it writes nothing more, so that its last watermark stays where its
writing stopped, listens into a ring of its own, and reports itself yielding; the
controller gives the task to its standby if that one is ready (after a silence, in a
report written late enough to show a fault they share: ``Control.confirmed``), and the
standby replays from that watermark. Nobody took it within its wait (``CLOSED_WAIT``;
``wait_for`` after a silence): it takes the task back, writing its own ring whole
(what it heard since it resubscribed), and the span it did not hear is its gap. Either
way it listened from its next subscription on, so a yield costs a delay, never a
message the old way would have kept.

The steps are the task's (``supervisor.Task._yield``, ``_take_back``); the controller's
part is ``Control._yielded``. An owner with no standby named for the task
(``Coordinator.covered``: a fleet of one, a standby not assigned yet) does not yield.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_CYCLE = 1.0  # node.CYCLE: a node reports what changed at its next cycle
# progress_writer.PROGRESS_REFRESH: an unchanged report is written again this long after
# the last, at the node's next cycle
REPORT_REFRESH = 2.0


def confirm_after(heartbeat: float) -> float:
    """Seconds past a yield's first report after which a report of its standby still
    standing by is believed (``Control.confirmed``): a fault the standby shares (Redis
    stopped for every node) is noticed by its heartbeat at most one ``heartbeat`` (its
    route's) after the owner noticed, and reported at its node's next cycle."""
    return heartbeat + NODE_CYCLE


def wait_for(heartbeat: float) -> float:
    """How long a yielding owner waits for its standby to take over: the confirmation,
    then the standby's next report (an unchanged one is refreshed 2 s after the last, at
    the node's next cycle: up to 3 s), a controller's cycle and the hand-off. 7 s at the
    default heartbeat (1 s)."""
    return confirm_after(heartbeat) + REPORT_REFRESH + 3 * NODE_CYCLE


YIELD_WAIT = wait_for(1.0)
# A subscription closed by the server needs no confirmation: its standby, if ready,
# takes over at the controller's next plan (the report at once, a cycle, the hand-off).
# A Sentinel failover closes the standby's too; waiting longer then only adds to it.
CLOSED_WAIT = 3.0
# A task that took itself back does not yield again this soon: its standby was not
# ready, and a source that keeps failing would hold its messages back every time.
YIELD_PAUSE = 10.0


@dataclass
class Yield:
    """An owner's yield to its standby: since when (wall clock) and why its
    subscription was lost, whether it fell silent (a timeout) on the server its standby
    listens on too (that server may be gone for the standby as well; not when the
    server closed it, nor when the standby listens on a replica), and when its own ring
    began to hear again."""

    since: float
    reason: str
    wait: float  # before it takes the task back (``wait_for`` or ``CLOSED_WAIT``)
    silent: bool = False
    heard_at: float | None = None
