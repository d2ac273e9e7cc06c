"""Polling with a deadline: the only way tests wait for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis_forwarder.retry import Deadline

POLL_INTERVAL = 0.05


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout``."""
    deadline = Deadline(timeout)
    while not condition():
        assert not deadline.expired, f"not true after {timeout:.0f}s: {what}"
        time.sleep(min(POLL_INTERVAL, deadline.remaining))
