"""Deadlines and polling. Every wait in the project has a timeout; this is where the
clock arithmetic lives so that callers only say what they wait for and for how long."""

from __future__ import annotations

import random
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


@dataclass
class Backoff:
    """Exponential backoff with a cap, jittered in the upper half of each step (half
    to all of it); ``reset`` after a success.

    One instance per loop that retries: state is never shared across callers.
    """

    initial: float = 0.1
    cap: float = 2.0
    _attempt: int = 0

    def next_delay(self) -> float:
        delay = self.current_delay()
        self._attempt = min(self._attempt + 1, 32)
        return delay

    def current_delay(self) -> float:
        """The delay ``next_delay`` would give, without moving on to the next."""
        delay = min(self.cap, self.initial * (2**self._attempt))
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._attempt = 0
