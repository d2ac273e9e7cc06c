"""Every drill scenario end to end on the `ha` lab, through the real command line: the
fault is real, the load steady, and the scenario's guarantee must hold (exit 0). One
lab serves them all: each drill restores the lab's state before it ends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_forwarder.drill.scenarios import SCENARIOS
from tests.support.cli import run_cli
from tests.support.deployments import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Shared = Callable[[str], Deployment]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_drill_keeps_its_guarantee(
    shared_deployment: Shared, scenario: str, tmp_path: Path
) -> None:
    lab = shared_deployment("ha").lab
    assert lab is not None
    result = run_cli(
        "drill", scenario, "--dir", str(lab.directory), "--json", "--report", str(tmp_path),
        timeout=300,
    )  # fmt: skip
    assert result.code == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    (report,) = json.loads(result.stdout)
    assert report["passed"] and report["broken"] == []
    routes = report["routes"]
    assert set(routes) == {"pubsub@alpha", "pubsub@beta", "stream@alpha", "stream@beta"}
    for name, route in routes.items():
        assert route["sent"] > 0 and route["duplicated"] == 0, name
        assert route["epoch_overlap"] == 0, name
        if name.startswith("stream@"):
            assert route["lost"] == 0, name
    assert any(
        e["what"].startswith(("kill", "SIGTERM", "SIGSTOP", "SENTINEL", "CLIENT"))
        for e in report["events"]
    )
    assert (tmp_path / f"{scenario}.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "drills.json").read_text())[0]["scenario"] == scenario


def test_drill_names_what_a_lab_without_forwarders_lacks(shared_deployment: Shared) -> None:
    lab = shared_deployment("standalone").lab
    assert lab is not None
    result = run_cli("drill", "kill-node", "--dir", str(lab.directory))
    assert result.code == 2 and "runs no forwarder nodes" in result.stderr
