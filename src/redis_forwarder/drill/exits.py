"""Liveness over a chaos campaign: a lab process that exits when the campaign did not
kill or stop it, and what the forwarder nodes' logs say went wrong unexpectedly.

Issue 9's bugs were of this kind: a node that exited on a ZooKeeper connection loss
at start-up and stayed down looked, in a drill, like a slow takeover; only a watch on
the processes themselves tells the two apart."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis_forwarder.lab import pids

if TYPE_CHECKING:
    from redis_forwarder.lab import Lab

POLL = 0.2  # seconds between looks at the processes
# What a node must never log: an error nobody handled, or a part of it that died of
# an error it did not expect (supervisor.py's "failed unexpectedly").
ALARMS = re.compile(rb"Traceback \(most recent call last\)|failed unexpectedly")
KEPT = 20  # log lines kept per node in the report


@dataclass
class Exit:
    at: float
    process: str
    kind: str  # forwarder, redis, sentinel, zookeeper

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "process": self.process, "kind": self.kind}


@dataclass
class ExitWatch:
    """Looks at every lab process each POLL seconds; an exit not ``expect``-ed is kept.
    A process the campaign killed is expected until the lab records it started again."""

    lab: Lab
    exits: list[Exit] = field(default_factory=list)
    _expected: set[tuple[int, int]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen_dead: set[tuple[int, int]] = field(default_factory=set)
    _halt: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def expect(self, name: str) -> None:
        identity = self.lab.record(name).identity
        with self._lock:
            self._expected.add((identity.pid, identity.start_ticks))

    def __enter__(self) -> ExitWatch:
        self._thread = threading.Thread(target=self._run, name="drill-exits", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(10)
        self._look()  # one last look: an exit in the last moments counts too

    def _run(self) -> None:
        while not self._halt.wait(POLL):
            try:
                self._look()
            except Exception:  # the state file mid-write: look again next time
                continue

    def _look(self) -> None:
        for record in self.lab.state().processes:
            key = (record.identity.pid, record.identity.start_ticks)
            if key in self._seen_dead or pids.is_running(record.identity):
                continue
            self._seen_dead.add(key)
            with self._lock:
                expected = key in self._expected
            if not expected:
                self.exits.append(Exit(time.time(), record.name, record.kind))


def log_offsets(lab: Lab) -> dict[str, int]:
    """Where each forwarder node's log ends now: the campaign reads from there on."""
    offsets = {}
    for record in lab.state().processes:
        if record.kind == "forwarder":
            path = Path(record.log)
            offsets[record.name] = path.stat().st_size if path.exists() else 0
    return offsets


def log_lines(lab: Lab, offsets: dict[str, int]) -> dict[str, list[bytes]]:
    """Per forwarder node, the lines its log gained after ``offsets``."""
    found: dict[str, list[bytes]] = {}
    for record in lab.state().processes:
        path = Path(record.log)
        if record.kind != "forwarder" or not path.exists():
            continue
        with path.open("rb") as log:
            log.seek(offsets.get(record.name, 0))
            found[record.name] = log.read().splitlines()
    return found


def log_alarms(logs: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Per node, the lines of ``logs`` (``log_lines``) that match ALARMS (with the line
    after a traceback's header up to the exception, at most KEPT lines per node)."""
    found: dict[str, list[str]] = {}
    for name, lines in logs.items():
        hits = [line.decode(errors="replace") for line in lines if ALARMS.search(line)]
        if hits:
            found[name] = hits[:KEPT]
    return found
