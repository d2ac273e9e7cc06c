"""Deadlines and polling. Every wait in the project has a timeout; this is where the
clock arithmetic lives so that callers only say what they wait for and for how long."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Deadline:
    """A point on the monotonic clock. Immune to wall-clock jumps."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> float:
        return max(0.0, self.start + self.seconds - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.start + self.seconds

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start
