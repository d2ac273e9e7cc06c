"""Forwarder nodes through ZooKeeper faults: a blip of the only ZooKeeper (kill -9 and
restart within the session timeout) loses no pub/sub message and doubles none; the
ensemble's leader killed, forwarding goes on; the whole of ZooKeeper down, nodes stop
writing within the session timeout and resume after, never two owners at once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.zk import ZooKeeperError
from redis_forwarder.lab import Lab
from redis_forwarder.model import Address
from tests.support.deployments import Deployment
from tests.support.fleet import Fleet, entries, fleet
from tests.support.node_runner import Publisher
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Fresh = Callable[[str], Deployment]


def zookeeper_answers(hosts: str) -> bool:
    try:
        with FleetClient(hosts, timeout=2):
            return True
    except Exception:
        return False


def payload_counts(client: redis.Redis, stream: str) -> Counter[int]:
    return Counter(int(fields[b"payload"]) for _at, fields in entries(client, stream))


def lab_source(deployment: Deployment) -> tuple[Lab, Address, redis.Redis]:
    """The deployment's lab, its first master and a client on it."""
    lab = deployment.require_lab()
    source = deployment.spec.shards[0].master
    return lab, source, redis.Redis(host=source.host, port=source.port)


def owner_and_epoch(f: Fleet) -> tuple[str | None, int | None]:
    (task,) = f.status()["tasks"]
    return (task["owner"] if task["running"] else None), task["epoch"]


def test_every_fleet_client_call_translates_kazoo_errors(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """The command line's ZooKeeper client with its connection closed under it: every
    call raises ZooKeeperError saying what it did where, the kazoo error kept as the
    cause (``exists`` once let it through raw, ending ``drain`` in a traceback)."""
    path = "/redis-forwarder-test/untranslated"
    with FleetClient(shared_deployment("standalone").zookeeper_hosts, timeout=5) as client:
        client.client.stop()
        calls: dict[str, Callable[[], object]] = {
            "reading": lambda: client.get(path),
            "listing": lambda: client.children(path),
            "checking": lambda: client.exists(path),
            "writing": lambda: client.put(path, b"x"),
            "deleting": lambda: client.remove(path),
            "reading lock": lambda: client.lock_holder(path),
        }
        for what, call in calls.items():
            with pytest.raises(ZooKeeperError, match=f"^{what.split()[0]} {path}: ") as raised:
                call()
            assert raised.value.__cause__ is not None, what


@pytest.mark.slow
def test_a_zookeeper_blip_loses_and_doubles_nothing(
    fresh_deployment: Fresh, tmp_path: Path
) -> None:
    deployment = fresh_deployment("standalone")
    lab, source, client = lab_source(deployment)
    # The blip is a kill -9 and a JVM start: on a busy 2-core CI machine that once took
    # 10 s, so the session outlives 20 (a blip, not an outage: zk-outage is the drill).
    with fleet(
        tmp_path, source, deployment.zookeeper_hosts, routes=("orders",), session_timeout=20
    ) as f:
        f.start("n1")
        f.wait_all_running({"n1"})
        owner, epoch = owner_and_epoch(f)
        stream = "{}:orders".format(f.root.strip("/"))
        with Publisher(lambda: source, "orders", interval=0.002) as publisher:
            wait_until(lambda: len(publisher.sent) > 200, "traffic flowing")
            lab.restart("zookeeper-1", hard=True)
            wait_until(lambda: "suspended" in f.nodes["n1"].log_text(), "n1 noticed the blip", 20)
            wait_until(lambda: zookeeper_answers(deployment.zookeeper_hosts), "ZooKeeper back", 30)
            wait_until(lambda: "session kept" in f.nodes["n1"].log_text(), "session kept", 30)
            back = time.time()
            wait_until(lambda: publisher.sent[-1][1] > back + 1, "traffic after the blip")
        sent = {seq for seq, _ in publisher.sent}
        wait_until(lambda: set(payload_counts(client, stream)) >= sent, "everything forwarded", 30)
        counts = payload_counts(client, stream)
        assert max(counts.values()) == 1, "a message was forwarded twice"
        assert owner_and_epoch(f) == (owner, epoch)  # the same ownership throughout


@pytest.mark.slow
def test_the_zookeeper_leader_killed_forwarding_goes_on(
    fresh_deployment: Fresh, tmp_path: Path
) -> None:
    deployment = fresh_deployment("zk-ensemble")
    lab, source, client = lab_source(deployment)
    config_source = {
        "kind": "sentinel",
        "addresses": [str(a) for a in deployment.sentinels],
        "masters": [s.name for s in deployment.spec.shards],
    }
    with fleet(
        tmp_path, source, deployment.zookeeper_hosts, routes=("orders",), session_timeout=6
    ) as f:
        f.rewrite({**f.config, "source": config_source})
        for node in ("n1", "n2"):
            f.start(node)

        def balanced() -> bool:  # a task per master, one on each node, both running
            tasks = f.status()["tasks"]
            return {(t["owner"], t["running"]) for t in tasks} == {("n1", True), ("n2", True)}

        wait_until(balanced, "a task per master on each node", 30)
        before = {(t["shard"], t["owner"], t["epoch"]) for t in f.status()["tasks"]}
        leader = next(
            r for r in lab.status() if r.record.kind == "zookeeper" and r.role == "leader"
        )
        stream = "{}:orders".format(f.root.strip("/"))
        with Publisher(lambda: source, "orders", interval=0.005) as publisher:
            wait_until(lambda: len(publisher.sent) > 100, "traffic flowing")
            lab.send_signal(leader.record.name, signal.SIGKILL)
            killed = time.time()
            wait_until(lambda: publisher.sent[-1][1] > killed + 8, "8 s of traffic after", 30)
        sent = {seq for seq, _ in publisher.sent}
        wait_until(lambda: set(payload_counts(client, stream)) >= sent, "all forwarded", 30)
        # Sessions survive a leader election (shorter than the session timeout).
        after = {(t["shard"], t["owner"], t["epoch"]) for t in f.status()["tasks"]}
        assert after == before


@pytest.mark.slow
def test_zookeeper_down_nodes_stop_writing_and_resume(
    fresh_deployment: Fresh, tmp_path: Path
) -> None:
    """ZooKeeper stopped for twice the session timeout: the owner's lease runs out, it
    stops writing and drops the task; when ZooKeeper is back, one node owns it again
    and nothing written by two epochs overlaps in time."""
    deployment = fresh_deployment("standalone")
    lab, source, client = lab_source(deployment)
    session = 4.0
    with fleet(
        tmp_path, source, deployment.zookeeper_hosts, routes=("orders",), session_timeout=session
    ) as f:
        f.start("n1")
        f.start("n2")
        f.wait_all_running({"n1", "n2"})
        _owner, epoch = owner_and_epoch(f)
        stream = "{}:orders".format(f.root.strip("/"))
        with Publisher(lambda: source, "orders", interval=0.005):
            wait_until(lambda: len(entries(client, stream)) > 50, "forwarding")
            lab.send_signal("zookeeper-1", signal.SIGSTOP)
            stopped = time.time()
            try:
                wait_until(lambda: time.time() > stopped + 2 * session, "two session timeouts", 30)
                during = [at for at, _ in entries(client, stream) if at > stopped + session]
            finally:
                lab.send_signal("zookeeper-1", signal.SIGCONT)
            assert during == [], f"{len(during)} entries written with no session"
            wait_until(lambda: owner_and_epoch(f)[0] is not None, "owned again", 40)
            resumed = time.time()
            wait_until(
                lambda: any(at > resumed for at, _ in entries(client, stream)), "forwarding again"
            )
        epochs = [(at, int(fields[b"epoch"])) for at, fields in entries(client, stream)]
        # A new epoch, or the same one: a node whose session ZooKeeper had not expired
        # yet when it woke (the client reconnected first) keeps its ownership, safely.
        now = owner_and_epoch(f)[1]
        assert now is not None and epoch is not None and now >= epoch  # (None: not owned)
        # One epoch at a time: once a newer epoch wrote, no older one writes again.
        newest = 0
        for _at, written in epochs:
            assert written >= newest, "an older epoch wrote after a newer one"
            newest = written
