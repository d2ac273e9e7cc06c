"""A node's identity and its life's edges in a fleet (issue 14): a second process with a
live node's id is refused and the first forwards on; a membership znode deleted from
outside comes back; a clean SIGTERM says what it handed off and raises no alarm; a
ZooKeeper that refuses connections is an answer within a second or two, in one line."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths, encode
from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.support.fleet import Fleet, entries, fleet
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]


def source_of(deployment: Deployment) -> redis.Redis:
    address = deployment.spec.shards[0].master
    return redis.Redis(host=address.host, port=address.port, socket_timeout=5)


def forwards(f: Fleet, client: redis.Redis, route: str, node: str) -> None:
    """Wait until a message published now on ``route`` is written by ``node``."""
    stream = f"{f.root.strip('/')}:{route}"
    marker = f"after-{time.monotonic()}".encode()

    def arrived() -> bool:
        client.publish(route, marker)
        return any(
            fields[b"payload"] == marker and fields[b"node"] == node.encode()
            for _at, fields in entries(client, stream)
        )

    wait_until(arrived, f"{node} forwarding {route}", timeout=15)


def members(f: Fleet) -> set[str]:
    return {str(m["id"]) for m in f.status()["members"]}


def test_a_second_process_with_a_live_nodes_id_is_refused(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    """The duplicate used to replace the first's membership ("replacing it"); when it
    stopped, the first stayed controller of an empty fleet and forwarded nothing again."""
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    client = source_of(deployment)
    with fleet(tmp_path, source, deployment.zookeeper_hosts, routes=("orders",)) as f:
        first = f.start("n1")
        f.wait_all_running({"n1"})
        # Bounded: on the old code the duplicate ran on (and was killed at the bound).
        result = run_cli(
            "--log-level", "info", "run", "--config", str(f.config_path), "--node-id", "n1",
            timeout=30,
        )  # fmt: skip
        assert result.code == 2, result.stderr
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith("redis-forwarder: error: node id 'n1' is taken")
        assert f"pid {first.pid}" in error, error
        assert "replacing it" not in result.stderr
        assert members(f) == {"n1"}
        forwards(f, client, "orders", "n1")
        assert first.process.poll() is None


@pytest.mark.slow  # 4-7 s: the fast set stays near two minutes
def test_a_node_restarted_after_kill_9_takes_its_id_back_at_once(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    """Its old session lives on for the session timeout; its pid is gone, so the
    membership it left is a dead predecessor's, not a duplicate's."""
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    client = source_of(deployment)
    with fleet(tmp_path, source, deployment.zookeeper_hosts, routes=("orders",)) as f:
        crashed = f.start("n1")
        f.wait_all_running({"n1"})
        crashed.signal(signal.SIGKILL)
        crashed.process.wait(10)
        restarted = f.start("n1")
        wait_until(lambda: "replacing the znode of" in restarted.log_text(), "n1 took its id back")
        forwards(f, client, "orders", "n1")
        assert restarted.process.poll() is None


def hold_on_another_host(hosts: str, root: str, node_id: str) -> FleetClient:
    """A session of the test's holding ``node_id``'s member znode, its document naming
    a host that is not this one (whose process the node cannot ask)."""
    holder = FleetClient(hosts)
    document = {"id": node_id, "host": "elsewhere", "pid": 1, "started_at": time.time()}
    holder.client.create(
        Paths(root).member(node_id), encode(document), ephemeral=True, makepath=True
    )
    return holder


def test_an_id_held_on_another_host_is_waited_for_then_taken(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    """A crashed node elsewhere: its session ends within the session timeout."""
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    client = source_of(deployment)
    hosts = deployment.zookeeper_hosts
    with fleet(tmp_path, source, hosts, routes=("orders",), session_timeout=3) as f:
        holder = hold_on_another_host(hosts, f.root, "n1")
        with holder:
            node = f.start("n1")
            wait_until(lambda: "waiting up to 6s" in node.log_text(), "n1 waiting for the holder")
            assert all(t["owner"] is None for t in f.status()["tasks"]), "n1 took a task"
        forwards(f, client, "orders", "n1")  # the holder's session closed: n1 registered
        assert next(m for m in f.status()["members"])["pid"] == node.pid


@pytest.mark.slow  # 4-7 s: the fast set stays near two minutes
def test_an_id_held_on_another_host_past_two_session_timeouts_is_refused(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    hosts = deployment.zookeeper_hosts
    with (
        fleet(tmp_path, source, hosts, routes=("orders",), session_timeout=3) as f,
        hold_on_another_host(hosts, f.root, "n1") as holder,
    ):
        node = f.start("n1")
        assert node.process.wait(20) == 2
        assert "error: node id 'n1' is taken" in node.log_text()
        assert "host elsewhere pid 1" in node.log_text()
        assert holder.exists(Paths(f.root).member("n1")), "the refused node deleted it"


def test_a_membership_deleted_from_outside_comes_back(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    client = source_of(deployment)
    with fleet(tmp_path, source, deployment.zookeeper_hosts, routes=("orders",)) as f:
        f.start("n1")
        f.wait_all_running({"n1"})
        with FleetClient(deployment.zookeeper_hosts) as zookeeper:
            assert zookeeper.remove(Paths(f.root).member("n1"))
        wait_until(lambda: members(f) == {"n1"}, "n1 registered again", timeout=5)
        f.wait_all_running({"n1"}, timeout=10)
        forwards(f, client, "orders", "n1")
        assert "its znode was deleted; registering again" in f.nodes["n1"].log_text()


def test_a_clean_sigterm_says_what_it_handed_off_and_raises_no_alarm(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    with fleet(tmp_path, source, deployment.zookeeper_hosts, routes=("orders", "audit")) as f:
        f.start("n1")
        f.start("n2")
        owners: dict[str, str | None] = {}

        def one_task_each() -> bool:  # balanced: each node owns and runs one route
            owners.update(f.owners(as_assigned=True))
            return set(owners.values()) == {"n1", "n2"}

        wait_until(one_task_each, "one task on each node")
        victim = owners["orders"]
        assert victim is not None
        node = f.nodes[victim]
        before = len(node.log_text())
        node.signal(signal.SIGTERM)
        assert node.process.wait(15) == 0
        stop_lines = node.log_text()[before:].splitlines()
        alarms = [line for line in stop_lines if " ERROR " in line or " WARNING " in line]
        assert alarms == [], "\n".join(stop_lines)
        said = "\n".join(stop_lines)
        assert "stopping: handing off 1 task(s): orders@" in said, said
        assert "orders@" in said and "ownership released" in said, said
        assert "left the fleet" in said and "session closed" in said, said


@pytest.mark.parametrize("command", [("run",), ("status",), ("drain", "n1")])
def test_a_zookeeper_refusing_connections_is_a_quick_clear_error(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Port 1 on loopback: nothing listens, the kernel refuses at once. kazoo used to
    retry for the whole 10 s start-up wait, logging a warning per try."""
    config = tmp_path / "fleet.toml"
    config.write_text(
        '[source]\nkind = "standalone"\naddresses = ["127.0.0.1:7000"]\n'
        '[[route]]\nname = "r"\nfrom = { channels = ["c"] }\nto = { list = "l" }\n'
        '[coordination]\nzookeeper = "127.0.0.1:1"\n'
    )
    started = time.monotonic()
    result = run_cli(*command[:1], "--config", str(config), *command[1:], timeout=30)
    seconds = time.monotonic() - started
    assert result.code == 6, result.stderr
    assert seconds < 4, f"{command[0]} took {seconds:.1f}s to give up"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:1" in lines[0] and "refused" in lines[0], lines[0]
