"""The `ha` spec: `lab up` starts three forwarder nodes after the deployment and waits
until each is connected and forwarding; `lab kill`, `lab restart` and `lab pause` act on
them by the pid the lab recorded, like on any other process of the lab."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Fresh = Callable[[str], Deployment]


def fleet(config: Path) -> dict[str, Any]:
    result = run_cli("status", "--config", str(config), "--json")
    assert result.code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.slow
def test_the_ha_lab_runs_a_fleet_that_survives_lab_kill(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("ha")
    lab = deployment.require_lab()
    directory = str(lab.directory)
    status = run_cli("lab", "status", "--dir", directory, "--json").json()
    forwarders = [p for p in status["processes"] if p["kind"] == "forwarder"]
    assert [p["name"] for p in forwarders] == ["fwd-1", "fwd-2", "fwd-3"]
    assert all(p["running"] for p in forwarders)
    config = Path(status["endpoints"]["forwarder_config"])
    document = fleet(config)
    assert len(document["members"]) == 3

    def owners() -> dict[tuple[str, str], str | None]:
        tasks = fleet(config)["tasks"]
        return {(t["route"], t["shard"]): t["owner"] if t["running"] else None for t in tasks}

    # 4 routes x 2 masters
    wait_until(lambda: len(owners()) == 8 and None not in owners().values(), "8 tasks owned", 30)
    victim = owners()[("orders", "alpha")]
    assert victim is not None
    killed = run_cli("lab", "kill", victim, "--dir", directory)
    assert killed.code == 0 and "killed (SIGKILL)" in killed.stdout
    wait_until(
        lambda: owners().get(("orders", "alpha")) not in (None, victim),
        "orders@alpha taken over",
        timeout=30,
    )
    master = deployment.spec.shards[0].master
    client = redis.Redis(host=master.host, port=master.port)
    client.publish("orders.eu", "after the kill")
    wait_until(lambda: client.xlen("mirror:alpha:orders.eu") >= 1, "forwarded by a survivor")
    assert run_cli("lab", "restart", victim, "--dir", directory).code == 0
    wait_until(
        lambda: victim in {m["id"] for m in fleet(config)["members"]},
        f"{victim} rejoined",
        timeout=30,
    )
