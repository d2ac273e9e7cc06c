"""An owner of a pub/sub task with a standby whose subscription is lost does not just
resubscribe: what was published until it is back is lost to it, and its standby heard
it (a chaos campaign: 796 messages waiting in a subscription that a Sentinel failover
closed; ``partition-redis`` with a short hold: 500 per route). It *yields*
(:class:`Yield`): it writes nothing more, so that its last watermark stays where its
writing stopped, listens into a ring of its own, and reports itself yielding; the
controller gives the task to its standby if that one is ready (``Control._plan``),
which replays from that watermark. Nobody took it within ``YIELD_WAIT``: it takes the
task back, writing its own ring whole (what it heard since it resubscribed), and the
span it did not hear is its gap. Either way it listened from its next subscription on,
so a yield costs a delay, never a message the old way would have kept.

The steps are the task's (``supervisor.Task._yield``, ``_take_back``); the controller's
part is ``Control._yielded``. An owner with no standby named for the task
(``Coordinator.covered``: a fleet of one, a standby not assigned yet) does not yield.
"""

from __future__ import annotations

from dataclasses import dataclass

# How long a yielding owner waits for its standby to take over: a report, a controller
# cycle and a hand-off take well under a second when the fleet is well.
YIELD_WAIT = 3.0
# A task that took itself back does not yield again this soon: its standby was not
# ready, and a source that keeps failing would hold its messages back every time.
YIELD_PAUSE = 10.0


@dataclass
class Yield:
    """An owner's yield to its standby: since when (wall clock) and why its
    subscription was lost, and when its own ring began to hear again."""

    since: float
    reason: str
    heard_at: float | None = None
