"""Where each slot of a cluster lab is served now, for the drill's load and read-back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from redis_forwarder.drill.load import RELOCATE_EVERY
from redis_forwarder.lab.probes import ProbeFailed
from redis_forwarder.lab.reshard import slot_owners
from redis_forwarder.model import Address


class SlotMap:
    """Which master serves each slot, from CLUSTER SLOTS of the first node that
    answers; asked again at most every ``RELOCATE_EVERY`` seconds (or when ``fresh``)."""

    def __init__(self, nodes: Callable[[], list[Address]]) -> None:
        self._nodes = nodes
        self._owners: dict[int, Address] = {}
        self._read_at = 0.0
        self._lock = threading.Lock()

    def owner(self, slot: int, *, fresh: bool = False) -> Address:
        with self._lock:
            if fresh or time.monotonic() - self._read_at > RELOCATE_EVERY:
                self._refresh()
            if slot not in self._owners:
                raise RuntimeError(f"no master serves slot {slot} now")
            return self._owners[slot]

    def _refresh(self) -> None:
        for node in self._nodes():
            try:
                self._owners = slot_owners(node, timeout=0.3)
            except ProbeFailed:
                continue
            self._read_at = time.monotonic()
            return
