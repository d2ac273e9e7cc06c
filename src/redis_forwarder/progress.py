"""What a node tells the fleet about its tasks each cycle, in its progress znode
(``status`` reads it): per task its epoch, state and counters, and the rate (messages
the sink answered per second since the last report). (The tasks it stands by for,
with their rings, are ``Standbys.status``.)
Apart from ``node`` so that it stays under the size limit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from redis_forwarder.coordination.paths import YIELD_SILENT, YIELDING
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.model import TaskKey


class ProgressReport:
    def __init__(self) -> None:
        self._rates: dict[TaskKey, tuple[int, float]] = {}  # forwarded, when: for rates

    def of(self, tasks: Mapping[TaskKey, Task]) -> dict[str, Any]:
        now = time.monotonic()
        progress: dict[str, Any] = {}
        for key, task in tasks.items():
            counts = task.metrics
            before, then = self._rates.get(key, (counts.forwarded, now))
            rate = (counts.forwarded - before) / (now - then) if now > then else 0.0
            self._rates[key] = (counts.forwarded, now)
            progress[f"{key[0]}@{key[1]}"] = {
                "epoch": task.epoch,
                "running": task.forwarding,
                "state": str(task.state),
                "refused_by_sink": task.refused_by_sink,
                "forwarded": counts.forwarded,
                "rate": round(rate, 1),
                "lag": round(counts.lag, 4),
                "last_message_at": counts.last_message_at,
                "gaps": len(task.gaps),
                # When its open gap began (wall clock), or None: the fleet page's "gap
                # open N s" (a count of gaps says nothing of the one going on now).
                "gap_since": task.gaps[-1].start if task.in_gap else None,
                # Its takeover from a standby's ring (issue 15), if it was one.
                "replayed": counts.ring.replayed,
                "ambiguous": counts.ring.ambiguous,
                "unaccounted_seconds": round(counts.ring.unaccounted_seconds, 3),
            }
            if (yielded := task.yielding) is not None:  # asks for its standby (``Control``)
                progress[f"{key[0]}@{key[1]}"][YIELDING] = yielded.since
                if yielded.silent:
                    progress[f"{key[0]}@{key[1]}"][YIELD_SILENT] = True
            if any(counts.bridged.values()):  # a bridge's (issue 20): only once it acts
                progress[f"{key[0]}@{key[1]}"]["bridged"] = dict(counts.bridged)
        for gone in self._rates.keys() - tasks.keys():
            del self._rates[gone]
        return progress
