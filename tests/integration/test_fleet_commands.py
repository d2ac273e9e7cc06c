"""The fleet commands' refusals, through the real command line on a real fleet: a name
that is neither a member (drain, undrain) nor a route (pause, resume) is a typo, not a
flag to write that nobody would ever read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.support.fleet import fleet
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_unknown_nodes_and_routes_are_refused_listing_the_known_ones(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    with fleet(tmp_path, deployment.spec.shards[0].master, deployment.zookeeper_hosts) as f:
        f.start("n1")
        wait_until(
            lambda: [m["id"] for m in f.status()["members"]] == ["n1"], "n1 a member", timeout=30
        )
        config = str(f.config_path)
        for command in ("drain", "undrain"):
            result = run_cli(command, "nosuchnode", "--config", config)
            assert result.code == 2, result.stdout + result.stderr
            assert "no node named 'nosuchnode'; the members of the fleet: n1" in result.stderr
        routes = ", ".join(sorted(f.routes))
        for command in ("pause", "resume"):
            result = run_cli(command, "nosuchroute", "--config", config)
            assert result.code == 2, result.stdout + result.stderr
            assert f"no route named 'nosuchroute'; the routes of {config}: {routes}" in (
                result.stderr
            )
        assert f.status()["drained"] == [] and f.status()["paused"] == []
        assert run_cli("drain", "n1", "--config", config).stdout == "node n1: drained\n"
        assert run_cli("pause", f.routes[0], "--config", config).code == 0
