"""The fleet bench's own look at ZooKeeper, apart from the members: who holds a task's
owner znode, and the whole tree under the root (the largest znode).

Blocking (one ``FleetClient`` session; kazoo's asynchronous calls pipeline a batch of
requests): the runner calls these in a thread, never on the members' event loop.
Only what ``coordination/paths.py`` documents is read: ``{root}/owners/{task}`` holds
``{"node": ..., "session": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths, decode
from redis_forwarder.model import TaskKey

BATCH = 500  # requests in flight at once
ANSWER_TIMEOUT = 30.0


@dataclass
class Walk:
    """The tree under the root, as walked once."""

    znodes: int = 0
    largest_bytes: int = 0
    largest_path: str = ""
    children: dict[str, int] = field(default_factory=dict)  # the root's children: znodes under


class Observer:
    def __init__(self, hosts: str, root: str) -> None:
        self.root = root
        self.paths = Paths(root)
        self.fleet = FleetClient(hosts, timeout=10)
        self.client: Any = self.fleet.client  # kazoo's, for its pipelined calls

    def close(self) -> None:
        self.fleet.__exit__()

    def owners_of(self, tasks: list[TaskKey]) -> dict[TaskKey, str | None]:
        """Each task's owner node as its owner znode names it (None: no owner znode)."""
        return {task: node for task, (node, _made) in self.claims_of(tasks).items()}

    def claims_of(self, tasks: list[TaskKey]) -> dict[TaskKey, tuple[str | None, float]]:
        """Each task's owner node and when its owner znode was made (ZooKeeper's clock,
        this host's: seconds since the epoch; 0.0 when there is none)."""
        found: dict[TaskKey, tuple[str | None, float]] = {}
        for start in range(0, len(tasks), BATCH):
            batch = tasks[start : start + BATCH]
            asked = [(t, self.client.get_async(self.paths.owner(t))) for t in batch]
            for task, answer in asked:
                try:
                    data, stat = answer.get(timeout=ANSWER_TIMEOUT)
                except Exception as exc:  # NoNodeError: no owner; kazoo is zk.py's to import
                    if type(exc).__name__ != "NoNodeError":
                        raise
                    found[task] = (None, 0.0)
                    continue
                claim = decode(data)
                node = str(claim.get("node")) if isinstance(claim, dict) else None
                found[task] = (node, stat.ctime / 1000)
        return found

    def walk(self) -> Walk:
        """Every znode under the root: how many, and the largest (its data's length)."""
        walk = Walk()
        pending = [self.root]
        while pending:
            batch, pending = pending[:BATCH], pending[BATCH:]
            stats = [(path, self.client.exists_async(path)) for path in batch]
            parents = []
            for path, answer in stats:
                stat = answer.get(timeout=ANSWER_TIMEOUT)
                if stat is None:
                    continue  # gone meanwhile (an ephemeral)
                walk.znodes += 1
                top, _, below = path[len(self.root) + 1 :].partition("/")
                if below:
                    walk.children[top] = walk.children.get(top, 0) + 1
                if stat.dataLength > walk.largest_bytes:
                    walk.largest_bytes, walk.largest_path = stat.dataLength, path
                if stat.numChildren:
                    parents.append((path, self.client.get_children_async(path)))
            for path, answer in parents:
                try:
                    names = answer.get(timeout=ANSWER_TIMEOUT)
                except Exception as exc:
                    if type(exc).__name__ != "NoNodeError":
                        raise
                    continue
                pending.extend(f"{path}/{name}" for name in names)
        return walk

    def delete_root(self) -> None:
        self.client.delete(self.root, recursive=True)
