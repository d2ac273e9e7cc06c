"""The shipped alert rules, evaluated by a real Prometheus the lab runs (the
`monitoring` spec): a forwarder node killed with kill -9 while the only other node is
drained leaves its tasks with nobody to run them, and Prometheus fires
ForwarderNodeDown and ForwarderTaskWithoutOwner; the survivor undrained takes the
tasks over and the second resolves; the killed node restarted, the first resolves.
Everything is read through Prometheus' HTTP API, as an operator's Alertmanager would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_forwarder.lab.monitoring import alerts
from redis_forwarder.model import Address
from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Fresh = Callable[[str], Deployment]
# The rules' "for" is 30 s; scrapes and evaluations every second; a takeover needs the
# lab's 4 s session timeout and a cycle or two. Bounds: generous, a 10x slower
# Prometheus or fleet fails them.
FIRE_WITHIN = 60.0
RESOLVE_WITHIN = 30.0


def _active(prometheus: Address, name: str) -> list[dict[str, object]]:
    return [a for a in alerts(prometheus) if a["labels"]["alertname"] == name]


def _firing(prometheus: Address, name: str) -> list[dict[str, object]]:
    return [a for a in _active(prometheus, name) if a["state"] == "firing"]


@pytest.mark.slow
def test_node_down_and_task_without_owner_fire_and_resolve_around_a_kill(
    fresh_deployment: Fresh,
) -> None:
    deployment = fresh_deployment("monitoring")
    lab = deployment.require_lab()
    directory = str(lab.directory)
    assert deployment.spec.monitoring is not None
    prometheus = deployment.spec.monitoring.prometheus
    config = str(Path(directory) / "data" / "fwd-1" / "forwarder.toml")
    # Its first scrapes may have caught a node before its tasks ran: pending, not firing.
    wait_until(lambda: alerts(prometheus) == [], "a healthy lab holds no alert", timeout=20)

    # fwd-2 drained: fwd-1 runs every task, and nobody can take them from it.
    assert run_cli("drain", "fwd-2", "--config", config).code == 0

    def running_on(node: str) -> bool:
        tasks = run_cli("status", "--config", config, "--json").json()["tasks"]
        return bool(tasks) and all(t["owner"] == node and t["running"] for t in tasks)

    wait_until(lambda: running_on("fwd-1"), "every task on fwd-1", timeout=30)
    victim = str(lab.record("fwd-1").address)
    assert run_cli("lab", "kill", "fwd-1", "--dir", directory).code == 0
    killed_at = time.monotonic()

    wait_until(
        lambda: (
            bool(_firing(prometheus, "ForwarderNodeDown"))
            and bool(_firing(prometheus, "ForwarderTaskWithoutOwner"))
        ),
        "ForwarderNodeDown and ForwarderTaskWithoutOwner firing",
        timeout=FIRE_WITHIN,
    )
    fired_after = time.monotonic() - killed_at
    assert fired_after >= 30, f"fired {fired_after:.1f}s after the kill, before the rules' for"
    (down,) = _firing(prometheus, "ForwarderNodeDown")
    assert down["labels"]["instance"] == victim  # type: ignore[index]
    unowned = {
        (a["labels"]["route"], a["labels"]["shard"])  # type: ignore[index]
        for a in _firing(prometheus, "ForwarderTaskWithoutOwner")
    }
    assert {route for route, _shard in unowned} == {"orders", "events"}

    assert run_cli("undrain", "fwd-2", "--config", config).code == 0
    wait_until(
        lambda: not _active(prometheus, "ForwarderTaskWithoutOwner"),
        "ForwarderTaskWithoutOwner resolved after fwd-2 took the tasks over",
        timeout=RESOLVE_WITHIN,
    )
    # status reads fwd-2's report, written once a cycle: a moment behind the scrape
    wait_until(lambda: running_on("fwd-2"), "every task on fwd-2", timeout=10)
    assert _firing(prometheus, "ForwarderNodeDown"), "fwd-1 is still down"

    assert run_cli("lab", "restart", "fwd-1", "--dir", directory).code == 0
    wait_until(
        lambda: not _active(prometheus, "ForwarderNodeDown"),
        "ForwarderNodeDown resolved after fwd-1 restarted",
        timeout=RESOLVE_WITHIN,
    )
