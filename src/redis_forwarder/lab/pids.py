"""Processes the lab started, known by pid *and* start time.

A pid alone is not an identity: after a reboot or a long time it may belong to another
process. The lab records each process's start time (``/proc/<pid>/stat`` field 22, in
clock ticks since boot) and signals a pid only while that still matches, so it never
kills a process it did not start.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from redis_forwarder.retry import Deadline


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rfind(")") + 2 :].split()


def identify(pid: int) -> ProcessIdentity | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return ProcessIdentity(pid, int(fields[19]))  # field 22 counted from after the name


def is_running(identity: ProcessIdentity) -> bool:
    """True while the process exists, is not a zombie, and is the one we started.

    A zombie counts as gone. It is not reaped here: its parent (a Popen, when the lab
    runs in this process) collects the exit status for its error message."""
    fields = _stat_fields(identity.pid)
    if fields is None:
        return False
    state, start_ticks = fields[0], int(fields[19])
    return state not in ("Z", "X") and start_ticks == identity.start_ticks


def send(identity: ProcessIdentity, sig: signal.Signals) -> bool:
    """Signal the process if it is still the one we started. Return whether it was sent."""
    if not is_running(identity):
        return False
    try:
        os.kill(identity.pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(identities: list[ProcessIdentity], grace: float = 10.0) -> list[ProcessIdentity]:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left and wait for it.

    Return the processes still running at the end (empty unless the kernel is stuck).
    """
    for identity in identities:
        send(identity, signal.SIGTERM)
    deadline = Deadline(grace)
    alive = [i for i in identities if is_running(i)]
    while alive and not deadline.expired:
        time.sleep(0.05)
        alive = [i for i in alive if is_running(i)]
    for identity in alive:
        send(identity, signal.SIGKILL)
    deadline = Deadline(5.0)
    while alive and not deadline.expired:
        time.sleep(0.02)
        alive = [i for i in alive if is_running(i)]
    return alive
