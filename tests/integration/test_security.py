"""Security against real servers: a fleet whose ZooKeeper znodes admit only its own
digest identity (another client can neither read the assignment, take ownership nor
rewrite it), and secrets that never appear in anything the processes write."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from redis_forwarder.coordination.paths import Paths
from redis_forwarder.lab.forwarders import to_toml
from tests.support.cli import Result, run_cli
from tests.support.deployments import Deployment
from tests.support.fleet import fleet
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]
SECRET = "zk-secret-4711-do-not-print"


def test_a_fleet_with_a_zookeeper_identity_locks_out_other_clients(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    with fleet(
        tmp_path, source, deployment.zookeeper_hosts, routes=("orders",),
        env={"RF_ZK_PASSWORD": SECRET},
    ) as f:  # fmt: skip
        config = f.use_identity()
        f.start("n1")

        def status() -> Result:
            return run_cli(
                "status", "--config", str(f.config_path), "--json", RF_ZK_PASSWORD=SECRET
            )

        authorized = status()
        assert authorized.code == 0, authorized.stderr
        # The controller's first assignment: the znode the stranger is refused below
        # (a status that starts in 0.15 s can come before it).
        wait_until(
            lambda: any(t["assigned"] == "n1" for t in json.loads(status().stdout)["tasks"]),
            "n1 assigned its task",
            timeout=20,
        )

        paths = Paths(f.root)
        stranger = KazooClient(hosts=deployment.zookeeper_hosts)
        stranger.start(10)
        try:
            attempt: Callable[[], object]
            for attempt in (
                lambda: stranger.get(paths.assignment),
                lambda: stranger.set(paths.assignment, b"{}"),
                lambda: stranger.create(paths.owner(("orders", "main")), b"{}", ephemeral=True),
                lambda: stranger.get_children(paths.members),
            ):
                with pytest.raises(NoAuthError):
                    attempt()
        finally:
            stranger.stop()
            stranger.close()

        # The command line without the identity, and with a wrong password: exit 6, named.
        anonymous = copy.deepcopy(config)
        del anonymous["coordination"]["username"], anonymous["coordination"]["password_env"]
        plain = tmp_path / "anonymous.toml"
        plain.write_text(to_toml(anonymous))
        refused = run_cli("status", "--config", str(plain))
        assert refused.code == 6
        assert "ZooKeeper refused access" in refused.stderr and "username" in refused.stderr
        wrong = run_cli("status", "--config", str(f.config_path), RF_ZK_PASSWORD="nope")
        assert wrong.code == 6 and "not the ones the fleet's znodes admit" in wrong.stderr
        # No secret in what anything wrote: the node's log, the CLI's output.
        f.stop_all()
        written = f.nodes["n1"].log_text() + "".join(
            r.stdout + r.stderr for r in (authorized, refused, wrong)
        )
        assert SECRET not in written
        assert "registered as n1" in f.nodes["n1"].log_text()
