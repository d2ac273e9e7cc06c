"""TLS against real TLS-only servers that ask for client certificates: a redis-server of
the test's own (discovery, pub/sub and streams forwarded over TLS; a server the CA did
not sign, and a missing certificate file, are clear errors), and the `tls` lab spec (a
Sentinel deployment TLS-only, through a failover)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import redis

from redis_forwarder.lab import tls as lab_tls
from redis_forwarder.lab.forwarders import to_toml
from redis_forwarder.lab.tls import LabTls
from redis_forwarder.model import Address
from tests.support import deployments
from tests.support.cli import run_cli
from tests.support.commands import command
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.tls import tls_redis
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
ADDRESS = Address(f"127.{deployments.test_network()}.250.1", 7990)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Address, LabTls]]:
    directory = tmp_path_factory.mktemp("tls")
    files = lab_tls.make(directory / "certs", [ADDRESS])
    with tls_redis(directory / "redis", ADDRESS, files) as address:
        yield address, files


def client(address: Address, files: LabTls) -> redis.Redis:
    return redis.Redis(
        host=address.host, port=address.port, ssl=True, ssl_ca_certs=str(files.ca),
        ssl_certfile=str(files.client_cert), ssl_keyfile=str(files.client_key),
    )  # fmt: skip


def source(address: Address, tls: Mapping[str, object]) -> dict[str, object]:
    return {"kind": "standalone", "addresses": [str(address)], "tls": tls}


def test_forwarding_over_tls(tls_server: tuple[Address, LabTls]) -> None:
    address, files = tls_server
    tag = uuid.uuid4().hex[:8]
    config = {
        "source": source(address, files.forwarder_section()),
        "route": [
            {"name": "p", "from": {"channels": [f"{tag}.c"]}, "to": {"stream": f"{tag}:p"}},
            {
                "name": "s",
                "from": {"streams": [f"{tag}.in"], "group": "g"},
                "to": {"stream": f"{tag}:copy:{{channel}}"},
            },
        ],
        "node": {"topology_interval": 0.5},
    }
    admin = client(address, files)
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "both tasks forwarding over TLS", timeout=20)
        for index in range(100):
            admin.publish(f"{tag}.c", f"m{index}")
            admin.xadd(f"{tag}.in", {"payload": f"e{index}"})
        wait_until(
            lambda: admin.xlen(f"{tag}:p") == 100 and admin.xlen(f"{tag}:copy:{tag}.in") == 100,
            "everything forwarded",
        )


def test_a_server_outside_the_ca_and_a_missing_file_are_named(
    tls_server: tuple[Address, LabTls], tmp_path: Path
) -> None:
    address, files = tls_server
    stranger = lab_tls.make(tmp_path / "other", [address])  # another CA
    config = tmp_path / "forwarder.toml"
    route = {"name": "p", "from": {"channels": ["c"]}, "to": {"stream": "p"}}
    foreign_ca = {**files.forwarder_section(), "ca_file": str(stranger.ca)}
    config.write_text(to_toml({"source": source(address, foreign_ca), "route": [route]}))
    untrusted = run_cli("topology", "--config", str(config))
    assert untrusted.code == 5, untrusted.stderr
    assert "certificate verify failed" in untrusted.stderr
    missing = {**files.forwarder_section(), "ca_file": str(tmp_path / "nowhere.crt")}
    config.write_text(to_toml({"source": source(address, missing), "route": [route]}))
    absent = run_cli("topology", "--config", str(config))
    assert absent.code == 2 and "nowhere.crt" in absent.stderr, absent.stderr
    good = {"source": source(address, files.forwarder_section()), "route": [route]}
    config.write_text(to_toml(good))
    found = run_cli("topology", "--config", str(config), "--json")
    assert found.code == 0 and str(address) in found.stdout, found.stderr


@pytest.mark.slow  # a lab of its own and a failover
def test_a_tls_only_lab_and_forwarding_through_its_failover(
    fresh_deployment: Callable[[str], Deployment],
) -> None:
    """`topology/tls.toml`: the lab makes its certificates and starts every server and
    sentinel TLS-only; plain TCP is refused; a node forwards over TLS and follows a
    SENTINEL FAILOVER (sentinel events over TLS too)."""
    deployment = fresh_deployment("tls")
    lab = deployment.require_lab()
    files = lab_tls.files(lab.directory)
    master = deployment.spec.shards[0].master
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=master.host, port=master.port, socket_timeout=2).ping()
    statuses = {s.record.name: s.role for s in lab.status()}
    assert statuses["secure-master"] == "master" and statuses["sentinel-1"] == "sentinel"
    tag = uuid.uuid4().hex[:8]
    config = {
        "source": {
            "kind": "sentinel",
            "addresses": [str(a) for a in deployment.sentinels],
            "masters": ["secure"],
            "tls": files.forwarder_section(),
        },
        "route": [{"name": "p", "from": {"channels": [f"{tag}.c"]}, "to": {"stream": f"{tag}:p"}}],
        "node": {"topology_interval": 0.5},
    }
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "forwarding over TLS", timeout=20)
        (task,) = runner.node.tasks.values()
        sentinel = client(deployment.sentinels[0], files)
        command(sentinel, "SENTINEL", "FAILOVER", "secure")
        replica = deployment.spec.shards[0].replicas[0]
        wait_until(
            lambda: task.source_address == replica and task.running,
            "the task on the promoted replica, over TLS",
            timeout=30,
        )
        promoted = client(replica, files)
        for index in range(50):
            promoted.publish(f"{tag}.c", f"m{index}")
        wait_until(lambda: promoted.xlen(f"{tag}:p") == 50, "forwarded after the failover")
