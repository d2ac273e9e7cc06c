"""`redis-forwarder bench --fleet` end to end on a small fleet (issue 18): 12 simulated
members, 600 tasks, on the shared lab's ZooKeeper. Every task gets owned, a SIGKILLed
member's tasks are owned elsewhere within the session timeout and a generous bound,
no znode is over 256 KiB, and the bench leaves no znode behind on a ZooKeeper that is
not its own. (Its numbers are for docs/scale.md, not for assertions.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from redis_forwarder.coordination.fleet_client import FleetClient
from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.unit.test_fleet_bench import DOCUMENTED

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SESSION_TIMEOUT = 3.0
GENEROUS = 5.0  # seconds past the session timeout: a loaded test machine


def test_a_small_fleet_owns_everything_and_takes_a_dead_members_tasks_over(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    zookeeper = shared_deployment("standalone").zookeeper_hosts
    result = run_cli(
        "bench", "--fleet", "12", "--tasks", "600", "--zookeeper", zookeeper,
        "--session-timeout", str(SESSION_TIMEOUT), "--steady-seconds", "2",
        "--quiet-seconds", "2", "--phase-timeout", "40", "--json",
        timeout=240,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    report = result.json()
    assert set(report) >= DOCUMENTED
    assert (report["nodes"], report["tasks"], report["session_timeout_s"]) == (12, 600, 3.0)
    assert report["settle_s"] is not None and report["owned_after_settle"] == 600
    assert report["victim_tasks"] > 0
    assert report["takeover_s"] is not None
    assert report["takeover_s"] <= SESSION_TIMEOUT + GENEROUS, report
    assert report["largest_znode_bytes"] <= 256 * 1024
    assert report["controller_cycle_s"]["count"] > 0
    assert report["zookeeper_requests_per_s"] > 0  # the lab's ZooKeeper answers mntr
    assert report["topology_change_s"] is not None
    assert report["join_moves"] is not None and report["leave_moves"] is not None
    assert report["leave_moves"] >= report["leave_ideal_moves"] * 0.5
    assert not report["notes"], report["notes"]
    with FleetClient(zookeeper) as client:
        assert not client.exists(report["root"]), "the bench left its root behind"
