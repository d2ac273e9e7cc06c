"""The drill tasks' owners and the controller, watched while a fault lasts: each change
becomes one of the drill's events (its timeline and report)."""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any, Protocol

from redis_forwarder.drill.workload import DRILL_ROUTES


class Watched(Protocol):
    """The fleet as a drill sees it (``LabTarget``, ``BridgeTarget``)."""

    def status(self) -> dict[str, Any]: ...

    def note(self, event: str) -> None: ...


class OwnershipWatcher:
    """Polls the tasks' owners and epochs of ``routes`` (the drill routes by
    default); each change is an event."""

    def __init__(self, target: Watched, routes: Collection[str] = DRILL_ROUTES) -> None:
        self.target = target
        self.routes = routes
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OwnershipWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        self._thread.join(10)

    def _run(self) -> None:
        last: dict[tuple[str, str], tuple[str | None, int | None]] = {}
        controller: str | None = None
        while not self._halt.wait(0.2):
            try:
                status = self.target.status()
            except Exception:
                continue  # ZooKeeper down: nothing to see
            if status["controller"] != controller and controller is not None:
                self.target.note(f"controller is now {status['controller']}")
            controller = status["controller"]
            for task in status["tasks"]:
                key = (task["route"], task["shard"])
                now = (task["owner"] if task["running"] else None, task["epoch"])
                if key in last and last[key] != now and task["route"] in self.routes:
                    self.target.note(f"{key[0]}@{key[1]}: owner {now[0]} epoch {now[1]}")
                last[key] = now
