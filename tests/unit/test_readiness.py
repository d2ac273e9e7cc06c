"""wait_for: polls checks to a deadline, names what is pending, reports progress."""

from __future__ import annotations

import pytest

from redis_forwarder.errors import NotReadyError, ProcessDiedError
from redis_forwarder.lab.probes import ProbeFailed
from redis_forwarder.lab.readiness import Check, wait_for


def test_waits_until_every_check_holds() -> None:
    calls = {"a": 0}

    def slowly() -> str | None:
        calls["a"] += 1
        return None if calls["a"] >= 3 else f"attempt {calls['a']}"

    seen: list[str] = []
    wait_for([Check("a", slowly), Check("b", lambda: None)], 10, progress=seen.append)
    assert calls["a"] == 3
    assert seen and seen[0].startswith("1/2 ready; waiting for a")


def test_timeout_names_pending_checks_and_their_last_reason() -> None:
    def unreachable() -> str | None:
        raise ProbeFailed("127.0.0.1:1: connection refused")

    with pytest.raises(NotReadyError) as caught:
        wait_for([Check("never", unreachable), Check("fine", lambda: None)], 0.2)
    assert caught.value.pending == ["never: 127.0.0.1:1: connection refused"]
    assert "--timeout" in str(caught.value)


def test_watchdog_stops_the_wait_at_once() -> None:
    def dead() -> None:
        raise ProcessDiedError("redis-1", 1, "/lab/logs/redis-1.log", "    FATAL")

    with pytest.raises(ProcessDiedError, match="redis-1 exited with status 1"):
        wait_for([Check("never", lambda: "no")], 60, watchdog=dead)
