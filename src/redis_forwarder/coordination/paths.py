"""Where things live under the configured root, and how they are encoded. Pure.

::

    {root}/members/{node}      ephemeral  who is alive: id, host, pid, version, metrics,
                                          config hash
    {root}/controller/         kazoo Lock recipe: its holder is the controller
    {root}/assignment          persistent layout 2 (issue 18): a small marker, the
                                          layout and the controller's shard names;
                                          layout 1 (older releases, and a fleet with
                                          an older member): one JSON document, task ->
                                          node, task -> standby, versioned
    {root}/parts               persistent layout 2: the assignment's serial and
                                          controller; its version is the controller's
                                          compare-and-set (``parts_store.py``)
    {root}/parts/{node}        persistent what one node owns (with each task's standby
                                          and last run) and stands by for; over 128 KB,
                                          continued in chunks ``{root}/parts/{node}/1..``
                                          (``parts.py``); ``@waiting``: tasks left
                                          without an owner until their standby is back
    {root}/owners/{task}       ephemeral  the task's owner; its czxid is the task's epoch
    {root}/progress/{node}     ephemeral  (and siblings {node}@1.. past 128 KB:
                                          progress_chunks.py)
                                          the node's tasks: forwarded, last message, epoch;
                                          and (``silent_for``) per Redis deployment, the
                                          seconds since any of its servers answered it;
                                          (``standing_by``) the tasks it stands by for;
                                          (``session``) the session it wrote under
    {root}/ran                 persistent layout 1: task -> [node, session, epoch] it
                                          last ran under (pub/sub tasks with a
                                          standby; reborn.py); in the parts in layout 2
    {root}/drained/{node}      persistent an operator drained this node
    {root}/paused/{route}      persistent an operator paused this route
    {root}/rebalance           persistent a request: recompute without stickiness

A task's name is ``route@shard`` (route names cannot hold ``@``), percent-quoted so
that any shard id is one znode name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from redis_forwarder.coordination.assignment import Assignment
from redis_forwarder.model import TaskKey

# The part of the tasks that have no owner (``StandbyWait``): "@" is quoted in every
# node's part name, so no node id has this one.
WAITING = "@waiting"


def quote_name(name: str) -> str:
    """Any node id or route name as one znode name."""
    return quote(name, safe="")


def unquote_name(name: str) -> str:
    return unquote(name)


def node_of_part(name: str) -> str:
    """The node a part's znode name is of ("" for ``WAITING``)."""
    return "" if name == WAITING else unquote(name)


def task_name(task: TaskKey) -> str:
    return quote(f"{task[0]}@{task[1]}", safe="")


def task_of(name: str) -> TaskKey:
    route, _, shard = unquote(name).partition("@")
    return route, shard


@dataclass(frozen=True)
class Paths:
    root: str

    @property
    def members(self) -> str:
        return f"{self.root}/members"

    def member(self, node: str) -> str:
        return f"{self.members}/{quote_name(node)}"

    @property
    def controller(self) -> str:
        return f"{self.root}/controller"

    @property
    def assignment(self) -> str:
        return f"{self.root}/assignment"

    @property
    def owners(self) -> str:
        return f"{self.root}/owners"

    def owner(self, task: TaskKey) -> str:
        return f"{self.owners}/{task_name(task)}"

    @property
    def progress(self) -> str:
        return f"{self.root}/progress"

    def progress_of(self, node: str) -> str:
        return f"{self.progress}/{quote_name(node)}"

    def progress_chunk(self, node: str, index: int) -> str:
        """Chunk ``index`` of a node's progress report (``progress_chunks``): the first
        is ``progress_of``, the others its siblings ``{node}@{index}``."""
        return self.progress_of(node) if index == 0 else f"{self.progress_of(node)}@{index}"

    @property
    def drained(self) -> str:
        return f"{self.root}/drained"

    @property
    def paused(self) -> str:
        return f"{self.root}/paused"

    @property
    def rebalance(self) -> str:
        return f"{self.root}/rebalance"

    @property
    def parts(self) -> str:
        return f"{self.root}/parts"

    def part(self, node: str) -> str:
        """A node's part of the assignment (``WAITING``: the tasks with no owner)."""
        name = WAITING if node == "" else quote_name(node)
        return f"{self.parts}/{name}"

    def chunk(self, node: str, index: int) -> str:
        """A part's chunk: the first is the part's znode itself."""
        part = self.part(node)
        return part if index == 0 else f"{part}/{index}"

    @property
    def ran(self) -> str:
        """What each task with a standby last ran under (``reborn.py``): written by the
        controller, watched by nobody (a write wakes no node)."""
        return f"{self.root}/ran"


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def assignment_document(
    assignment: Assignment,
    controller: str,
    serial: int,
    shard_names: dict[str, Any] | None = None,
    standbys: Assignment | None = None,
) -> bytes:
    document: dict[str, Any] = {
        "controller": controller,
        "serial": serial,
        "tasks": {task_name(task): node for task, node in sorted(assignment.items())},
        # task -> the node standing by for it (issue 15); read by standbys_of
        "standbys": {task_name(task): node for task, node in sorted((standbys or {}).items())},
    }
    if shard_names is not None:
        document["shards"] = shard_names  # the controller's names for cluster shards
    return encode(document)


def ran_document(ran: Mapping[TaskKey, tuple[str, int, int]]) -> bytes:
    """task -> [node, session, epoch] it last ran under (``Paths.ran``; reborn.py)."""
    return encode({task_name(t): list(v) for t, v in sorted(ran.items())})


def ran_of(data: bytes | None) -> dict[TaskKey, tuple[str, int, int]]:
    """Under which node, session and epoch each task with a standby last ran, as the
    controller recorded it (none before it did, or from an unreadable document)."""
    ran = decode(data)
    if not isinstance(ran, dict):
        return {}
    try:
        return {task_of(n): (str(v[0]), int(v[1]), int(v[2])) for n, v in ran.items()}
    except (TypeError, ValueError, IndexError):
        return {}


SESSION = "session"  # in a node's progress document: the ZooKeeper session it wrote under


def running_of(document: Any) -> tuple[int, dict[TaskKey, int]] | None:
    """From a node's progress document: its session and each task it runs, with the
    epoch (None from a node of an older version, or garbage)."""
    if not isinstance(document, dict) or not isinstance(document.get(SESSION), int):
        return None
    tasks = {
        task_of(name): int(entry["epoch"])
        for name, entry in document.items()
        if isinstance(entry, dict) and isinstance(entry.get("epoch"), int) and entry["epoch"]
    }
    return document[SESSION], tasks


def shard_names_of(data: bytes | None) -> dict[str, Any] | None:
    """The controller's shard names in an assignment document, if it wrote any."""
    document = decode(data)
    names = document.get("shards") if isinstance(document, dict) else None
    return names if isinstance(names, dict) else None


def assignment_of(data: bytes | None) -> tuple[Assignment, int]:
    """The assignment and its serial (0 when there is none yet or it is unreadable)."""
    document = decode(data)
    if not isinstance(document, dict):
        return {}, 0
    tasks = document.get("tasks") or {}
    return {task_of(name): str(node) for name, node in tasks.items()}, int(
        document.get("serial", 0)
    )


def standbys_of(data: bytes | None) -> Assignment:
    """The standbys in an assignment document: task -> node. A document from before
    standbys (or an unreadable one) has none."""
    document = decode(data)
    standbys = document.get("standbys") if isinstance(document, dict) else None
    if not isinstance(standbys, dict):
        return {}
    return {task_of(name): str(node) for name, node in standbys.items()}


# In a node's progress document, beside its tasks ("route@shard"): per Redis deployment,
# seconds since any of its servers answered the node.
SILENCE = "silent_for"
# ... and the tasks the node stands by for (issue 15): per task, its standby's state
# and ring (``Standbys.status``).
STANDING_BY = "standing_by"


# ... and, in a task's entry, since when its owner yields it to its standby: it lost its
# subscription, and the standby heard what it missed (``forwarding.yielding``).
YIELDING = "yielding"
# ... and whether its subscription fell silent (a timeout, not closed by the server) on
# the server its standby listens on too: the standby may share it (``Control.confirmed``).
YIELD_SILENT = "yield_silent"


def yielding_of(document: Any, silent: bool = False) -> set[TaskKey]:
    """The tasks a progress document says its node yields to their standbys (only those
    whose subscription fell silent, with ``silent``)."""
    if not isinstance(document, dict):
        return set()
    return {
        task_of(name)
        for name, entry in document.items()
        if isinstance(entry, dict)
        and entry.get(YIELDING) is not None
        and (entry.get(YIELD_SILENT) is True or not silent)
        and "@" in name
    }


def standing_by_of(document: Any) -> set[TaskKey]:
    """The tasks a progress document says its node stands by for, ready: subscribed,
    its ring filling (state "standby"). None when missing or malformed (a node of an
    older version); a plain list of names (the first format) counts as ready."""
    found = document.get(STANDING_BY) if isinstance(document, dict) else None
    if isinstance(found, list):
        return {task_of(name) for name in found if isinstance(name, str)}
    if not isinstance(found, dict):
        return set()
    return {
        task_of(name)
        for name, status in found.items()
        if isinstance(name, str) and isinstance(status, dict) and status.get("state") == "standby"
    }


def ring_of(document: Any, task: str) -> dict[str, Any] | None:
    """A standby's report of ``task`` ("route@shard"): state, source and ring."""
    found = document.get(STANDING_BY) if isinstance(document, dict) else None
    status = found.get(task) if isinstance(found, dict) else None
    return status if isinstance(status, dict) else None


def silence_of(document: Any) -> dict[str, float]:
    """The ``silent_for`` of a progress document ({} when missing or malformed: a node
    of an older version, or garbage, is never taken as cut off)."""
    silence = document.get(SILENCE) if isinstance(document, dict) else None
    if not isinstance(silence, dict):
        return {}
    try:
        return {str(name): float(seconds) for name, seconds in silence.items()}
    except (TypeError, ValueError):
        return {}


def summary(progress: dict[str, Any]) -> tuple[Any, ...]:
    """What of a progress document the controller decides by: the session, each task's
    epoch, running, state and yield, each standby's state, and the silences in whole seconds
    (a deployment falling silent shows each second; counters and rates do not count).
    A node writes its progress when this changed (``coordinator``)."""
    tasks = sorted(
        (
            name,
            entry.get("epoch"),
            entry.get("running"),
            entry.get("state"),
            entry.get("gaps"),
            entry.get(YIELDING) is not None,
        )
        for name, entry in progress.items()
        if isinstance(entry, dict) and "epoch" in entry
    )
    standing = progress.get(STANDING_BY)
    states = sorted(
        (name, status.get("state"))
        for name, status in (standing.items() if isinstance(standing, dict) else ())
        if isinstance(status, dict)
    )
    silence = sorted((name, int(seconds)) for name, seconds in silence_of(progress).items())
    return (progress.get(SESSION), tuple(tasks), tuple(states), tuple(silence))
