"""A node running as a Redis ACL user with only the commands the forwarder needs
(docs/security.md), forwarding pub/sub and streams; its password comes from the
environment and appears in nothing the process or the command line writes."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from redis_forwarder.lab.forwarders import to_toml
from tests.support.cli import cli_command, cli_env, run_cli
from tests.support.commands import command
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]

# The least a node needs (docs/security.md keeps this list). Keys and channels: all
# (`~* &*`), or narrow them to the route's names.
FORWARDER_COMMANDS = (
    "+ping +role +info +cluster|shards +cluster|slots "
    "+subscribe +psubscribe +ssubscribe +unsubscribe +punsubscribe +sunsubscribe "
    "+publish +spublish +xadd +xrange +rpush +ltrim "
    "+xreadgroup +xack +xautoclaim +xpending +xinfo|groups +xgroup|create"
)


def test_a_least_privilege_acl_user_forwards_and_its_password_stays_secret(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    admin = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    user, secret = f"fwd-{tag}", f"acl-secret-{uuid.uuid4().hex}"
    command(admin,
        "ACL", "SETUSER", user, "on", f">{secret}", "resetkeys", "~*", "resetchannels", "&*",
        "-@all", *FORWARDER_COMMANDS.split(),
    )  # fmt: skip
    config = {
        "source": {
            "kind": "standalone",
            "addresses": [str(server)],
            "username": user,
            "password_env": "RF_TEST_REDIS_PASSWORD",
        },
        "route": [
            {"name": "p", "from": {"patterns": [f"{tag}.*"]}, "to": {"stream": f"{tag}:p"}},
            {
                "name": "s",
                "from": {"streams": [f"{tag}.in"], "group": "g"},
                "to": {"list": f"{tag}:l:{{channel}}", "maxlen": 100},
            },
        ],
        "node": {"topology_interval": 0.5},
    }
    path = tmp_path / "forwarder.toml"
    path.write_text(to_toml(config))
    log = tmp_path / "node.log"
    env = cli_env(RF_TEST_REDIS_PASSWORD=secret)
    with open(log, "wb") as out:
        node = subprocess.Popen(
            cli_command("--log-level", "debug", "run", "--config", str(path)),
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (
            b"forwarding from" not in log.read_bytes()
            or log.read_bytes().count(b"forwarding from") < 2
        ):
            assert node.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)  # polling the log, with the deadline above
        for index in range(50):
            admin.publish(f"{tag}.x", f"m{index}")
            admin.xadd(f"{tag}.in", {"payload": f"e{index}"})
        wait_until(
            lambda: admin.xlen(f"{tag}:p") == 50 and admin.llen(f"{tag}:l:{tag}.in") == 50,
            "everything forwarded by the ACL user",
        )
        # XACK follows the sink's answer: poll for it rather than race it.
        wait_until(lambda: admin.xpending(f"{tag}.in", "g")["pending"] == 0, "all acknowledged")
        topology = run_cli(
            "topology", "--config", str(path), "--json", RF_TEST_REDIS_PASSWORD=secret
        )
        wrong = run_cli("topology", "--config", str(path), RF_TEST_REDIS_PASSWORD="wrong")
    finally:
        node.terminate()
        node.wait(20)
        command(admin, "ACL", "DELUSER", user)
    assert topology.code == 0 and wrong.code == 5
    written = log.read_text() + topology.stdout + topology.stderr + wrong.stdout + wrong.stderr
    assert "refused" in wrong.stderr.lower()
    assert secret not in written and "NOPERM" not in written
