"""The fleet as a node's metrics address shows it: ``/fleet.json`` answers the document
``redis-forwarder status --json`` prints (coordination/fleet.py), with what the page
flags (each member's health, each task's problems, a summary); ``/`` is the page that
draws it (web/fleet.html, read-only).

The document is read through one ZooKeeper session of the view's own, opened at the
first request (most nodes are never looked at) and kept. Many open pages must not
multiply the reads: an answer is kept for ``FRESH_FOR`` seconds, and a lock lets one
request read at a time (the others wait, then take its answer). A failed read answers
503 naming what failed and drops the session: the next read connects again (a session
that saw ZooKeeper go may be expired, or reconnecting to a server that is gone).

A node without ``[coordination]`` runs alone: its document says so, with the node's own
tasks as its last cycle published them (``Readiness``), not a fleet.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.coordination.fleet import STALE_AFTER, fleet_status
from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths, task_of
from redis_forwarder.errors import ForwarderError
from redis_forwarder.observe import Readiness

log = logging.getLogger(__name__)

FRESH_FOR = 1.0  # seconds an answer is kept: pages poll every 2 s, however many are open
# A read that takes long (a fleet of 20,000 tasks: every owner znode) is kept this many
# times its own length, so that an open page never keeps ZooKeeper busy for more than
# a fifth of the time.
KEEP_PER_READ = 5.0
# Seconds a request waits for another request's read (ZooKeeper slow to answer) before
# it answers 503 itself, and the page's session's connect timeout: the page waits 20 s.
WAIT_FOR_READ = 5.0
CONNECT_TIMEOUT = 5.0
CLOSE_WAIT = 2.0  # seconds a stopping node waits for a read under way before it closes
ALONE = (
    "this node runs alone (no [coordination] in its config): there is no fleet, and it "
    "forwards every task itself"
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # JSON


@functools.cache
def page() -> bytes:
    """The page, read once: the same bytes for every request."""
    return (resources.files("redis_forwarder") / "web" / "fleet.html").read_bytes()


class FleetView:
    """What ``/fleet.json`` answers; called from the health server's threads."""

    def __init__(
        self,
        config: ForwarderConfig,
        node_id: str,
        readiness: Callable[[], Readiness],
    ) -> None:
        self.coordination = config.coordination
        self.cut_off_after = config.cut_off_after
        self.node_id = node_id
        self.readiness = readiness
        self._lock = threading.Lock()
        self._client: FleetClient | None = None
        self._kept: Answer | None = None
        self._kept_at = 0.0
        self._keep_for = FRESH_FOR
        self._closed = False

    def page(self) -> bytes:
        return page()

    def answer(self) -> Answer:
        """The fleet's document (200), or what failed (503; 500 for a bug)."""
        if self.coordination is None:
            return _json(200, self._alone())
        if not self._lock.acquire(timeout=WAIT_FOR_READ):
            why = f"another request has been reading ZooKeeper for over {WAIT_FOR_READ:.0f}s"
            return _json(503, self._failure(f"cannot read the fleet from ZooKeeper: {why}"))
        try:
            if self._kept is None or time.monotonic() - self._kept_at >= self._keep_for:
                started = time.monotonic()
                self._kept = self._read()  # a failure is kept too: no reconnect per page
                self._kept_at = time.monotonic()
                self._keep_for = max(FRESH_FOR, KEEP_PER_READ * (self._kept_at - started))
            return self._kept
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the session (the server stops). A read under way fails, and is the
        last: no request opens a session after this."""
        locked = self._lock.acquire(timeout=CLOSE_WAIT)
        try:
            self._closed = True
            self._drop()
        finally:
            if locked:
                self._lock.release()

    def _read(self) -> Answer:
        coordination = self.coordination
        assert coordination is not None
        if self._closed:
            return _json(503, self._failure("the node is stopping"))
        try:
            if self._client is None:
                self._client = FleetClient(
                    coordination.zookeeper,
                    timeout=min(coordination.session_timeout, CONNECT_TIMEOUT),
                    credentials=coordination.credentials(),
                )
            document = fleet_status(self._client, Paths(coordination.root), self.cut_off_after)
            if self._closed:  # closed while this read connected: leave no session behind
                self._drop()
        except ForwarderError as exc:
            self._drop()
            return _json(503, self._failure(f"cannot read the fleet from ZooKeeper: {exc}"))
        except Exception as exc:
            # A bug in reading must not end in a traceback per poll, nor a stuck session.
            log.exception("the fleet page's read of ZooKeeper failed")
            self._drop()
            return _json(500, self._failure(f"reading the fleet failed: {exc!r}"))
        return _json(200, self._framed(document))

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken session: nothing to add
                client.close()

    def _where(self) -> dict[str, Any]:
        coordination = self.coordination
        fleet = (
            {"root": coordination.root, "zookeeper": coordination.zookeeper}
            if coordination
            else None
        )
        return {"fleet": fleet, "served_by": self.node_id, "now": time.time()}

    def _failure(self, error: str) -> dict[str, Any]:
        return {**self._where(), "error": error}

    def _framed(self, document: dict[str, Any]) -> dict[str, Any]:
        framed = {**self._where(), "alone": False, **document}
        return annotated(framed)

    def _alone(self) -> dict[str, Any]:
        running = self.readiness().details.get("tasks")
        tasks = [
            own_task(str(name), self.node_id, bool(forwarding))
            for name, forwarding in sorted(running.items() if isinstance(running, dict) else ())
        ]
        document = {
            **self._where(),
            "alone": True,
            "message": ALONE,
            "controller": None,
            "members": [],
            "drained": [],
            "paused": [],
            "assignment_serial": None,
            "tasks": tasks,
        }
        return annotated(document)


def own_task(name: str, node_id: str, forwarding: bool) -> dict[str, Any]:
    """A task of a node alone, in the fleet document's shape (what it does not know is
    None: its counters are in /metrics)."""
    route, shard = task_of(name)
    return {
        "route": route,
        "shard": shard,
        "assigned": node_id,
        "owner": node_id,
        "standby": None,
        "standby_reported": False,
        "standby_ring": None,
        "epoch": None,
        "running": forwarding,
        "state": "forwarding" if forwarding else None,
        "forwarded": None,
        "rate": None,
        "lag": None,
        "last_message_at": None,
        "gaps": None,
    }


def annotated(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with what the page flags: each member's ``health``, each task's
    ``problems`` and ``severity``, and the ``summary`` line's counts."""
    now = float(document["now"])
    for member in document["members"]:
        member["controller"] = member.get("id") == document["controller"]
        member["health"] = member_health(member, now)
    paused = set(document["paused"])
    for task in document["tasks"]:
        # A paused route forwards nowhere, as asked: no problem to flag.
        task["problems"] = [] if task["route"] in paused else task_problems(task)
        task["severity"] = severity(task, paused)
    tasks = document["tasks"]
    with_standby = [t for t in tasks if t.get("standby")]
    document["summary"] = {
        "members": len(document["members"]),
        "tasks": len(tasks),
        "not_running": sum(1 for t in tasks if not t.get("running")),
        "unowned": sum(1 for t in tasks if not t.get("owner")),
        "standbys": len(with_standby),
        "standbys_ready": sum(1 for t in with_standby if t.get("standby_reported")),
    }
    return document


def member_health(member: dict[str, Any], now: float) -> str:
    """One word, the worst that holds: ``silent`` (no report for ``STALE_AFTER``
    seconds: the fleet takes its tasks as not running), ``cut off`` (from a Redis
    deployment: assigned nothing), ``config drift`` (assigned nothing), ``drained``,
    else ``reporting``. From the document only: no other node is asked."""
    reported_at = member.get("reported_at")
    if reported_at is None or now - float(reported_at) > STALE_AFTER:
        return "silent"
    if member.get("cut_off"):
        return "cut off"
    if member.get("config_drift"):
        return "config drift"
    if member.get("drained"):
        return "drained"
    return "reporting"


def task_problems(task: dict[str, Any]) -> list[str]:
    """What is wrong with a task, as the page lists it."""
    problems = []
    if not task.get("owner"):
        problems.append("no owner")
    elif not task.get("running"):
        problems.append("not running")
    elif task.get("state") not in (None, "forwarding"):
        problems.append(f"state {task['state']}")
    if task.get("standby") and not task.get("standby_reported"):
        problems.append("standby not ready")
    return problems


def severity(task: dict[str, Any], paused: set[str]) -> str:
    """``paused`` (nothing forwards it, as asked), ``bad`` (nothing forwards it),
    ``warn`` (it forwards, its standby is not ready or its state is odd), or ``ok``."""
    if task["route"] in paused:
        return "paused"
    if not task.get("owner") or not task.get("running"):
        return "bad"
    return "warn" if task["problems"] else "ok"


def _json(status: int, document: dict[str, Any]) -> Answer:
    return Answer(status, json.dumps(document).encode())
