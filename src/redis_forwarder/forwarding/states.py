"""A task's states, and the gaps between its forwarding spells. Pure values.

::

    connecting ──▶ forwarding ──(a connection lost)──▶ backing-off ──▶ connecting
        │  ▲            │                                   ▲
        │  └────────────┴──(rehome: the master moved)──▶ rehoming
        └─(failed)──────────────────────────────────────────┘
    any ──stop──▶ stopping ──▶ stopped   (final: nothing is read after stopping)

    a standby (issue 15): connecting ──▶ standby ──(promote)──▶ forwarding
                          (a lost subscription: backing-off, a hole in its ring, no gap)

    an owner whose subscription was lost, with a standby (``forwarding.yielding``):
        forwarding ──(lost)──▶ connecting ──▶ yielding ──(its standby took over)──▶ stopped
                                                 └──(nobody did: it takes it back)──▶ forwarding

A gap opens when a task leaves ``forwarding`` (or fails to get there) for any reason
but a stop, and closes when it is ``forwarding`` again: pub/sub messages published
inside a gap are lost, which is what gaps measure. Stream tasks lose nothing in a gap:
unacknowledged entries are claimed again when they reconnect.

Not a state but a flag beside it: a ``forwarding`` task whose sink refused every write
since it last took one (``TaskMetrics.sink_refusing``: a replica's READONLY, WRONGTYPE)
forwards nothing; the node reports it as not forwarding (status line, /readyz,
``forwarder_sink_refusing``). A flag, because its connections are fine and the loop
goes on: the next write the sink takes clears it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TaskState(StrEnum):
    CONNECTING = "connecting"
    FORWARDING = "forwarding"
    BACKING_OFF = "backing-off"  # a gap is open: waiting before the next attempt
    REHOMING = "rehoming"  # the master moved: dropping connections, reconnecting at once
    STANDBY = "standby"  # listening into its ring, writing nothing (issue 15)
    # An owner that lost its subscription, listening into a ring of its own while it
    # asks for its standby (which heard what it missed) to take over.
    YIELDING = "yielding"
    STOPPING = "stopping"
    STOPPED = "stopped"


FINAL = frozenset({TaskState.STOPPING, TaskState.STOPPED})


@dataclass
class Gap:
    start: float  # wall clock
    reason: str
    end: float | None = None

    @property
    def open(self) -> bool:
        return self.end is None
