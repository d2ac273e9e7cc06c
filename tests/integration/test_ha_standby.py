"""Standbys (issue 15) with real node processes and a real ZooKeeper: the controller
names, for a pub/sub task, an owner and a standby on another node, and the standby
learns it; when the owner is killed (-9), the standby becomes the owner (it is the node
that holds the messages published meanwhile, once the data path keeps them) and the
third node becomes the new standby."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.support.fleet import fleet
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
NODES = {"n1", "n2", "n3"}


def only_task(status: dict[str, Any]) -> dict[str, Any]:
    """The one task's row ({} before the controller assigned it)."""
    tasks = status["tasks"]
    assert len(tasks) <= 1, tasks
    return dict(tasks[0]) if tasks else {}


@pytest.mark.slow  # the fast set's kill -9 of an owner: test_standby_fleet
def test_the_standby_of_a_killed_owner_takes_its_task_over(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    with fleet(tmp_path, source, deployment.zookeeper_hosts, routes=("orders",)) as f:
        for node in sorted(NODES):
            f.start(node)
        task: dict[str, Any] = {}

        def owned_and_stood_by(owner_not: str | None = None) -> bool:
            task.clear()
            task.update(only_task(f.status()))
            return bool(
                task
                and task["running"]
                and task["owner"] == task["assigned"]
                and task["owner"] != owner_not
                and task["standby_reported"]
            )

        wait_until(owned_and_stood_by, "orders owned, running, and stood by", timeout=30)
        owner, standby = task["owner"], task["standby"]
        assert owner in NODES and standby in NODES - {owner}
        # The CLI shows the same: its JSON, and the table's standby column.
        shown = only_task(run_cli("status", "--config", str(f.config_path), "--json").json())
        assert (shown["owner"], shown["standby"]) == (owner, standby)
        table = run_cli("status", "--config", str(f.config_path)).stdout
        (row,) = [line for line in table.splitlines() if "│ orders " in line]
        cells = [cell.strip() for cell in row.split("│")]
        assert cells[4] == owner, row  # the owner column
        # The standby column: the node, then its ring's depth ("n3 (2s, 0.1 MB)").
        assert cells[5].split(" (")[0] == standby and "MB)" in cells[5], row
        f.nodes[owner].signal(signal.SIGKILL)
        wait_until(lambda: owned_and_stood_by(owner_not=owner), "a new owner running, stood by", 30)
        assert task["owner"] == standby, f"the standby {standby} did not take over: {task}"
        (third,) = NODES - {owner, standby}
        assert task["standby"] == third
        log = f.nodes[f.status()["controller"]].log_text()
        assert "(1 to their standby)" in log
