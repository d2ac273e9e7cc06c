"""``to.wait`` on a cluster target: each master a batch touched is sent its own WAIT
(its replicas). While the replica of the master holding the sink key is stopped,
stream entries stay pending (unreplicated) and pub/sub batches are counted
unconfirmed; once it answers, they are acknowledged, and batches confirmed again."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from redis_forwarder.lab import Lab
from redis_forwarder.model import Address
from redis_forwarder.topology.slots import key_slot
from tests.support.cluster import client, owner_of
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Fresh = Callable[[str], Deployment]
WAIT = {"replicas": 1, "timeout": 0.1}


def config(source: Deployment, target: Deployment, route: dict[str, Any]) -> dict[str, Any]:
    server = source.spec.shards[0].master
    masters = [s.master for s in target.spec.shards]
    return {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "targets": {"archive": {"kind": "cluster", "addresses": [str(m) for m in masters]}},
        "route": [{"name": "copy", **route}],
        "node": {"topology_interval": 0.5},
    }


def holder_of(target: Deployment, key: str) -> tuple[Address, Address]:
    """The master that holds ``key`` on the target, and its replica."""
    masters = [s.master for s in target.spec.shards]
    master = owner_of(masters, key_slot(key))
    shard = next(s for s in target.spec.shards if s.master == master)
    return master, shard.replicas[0]


@contextmanager
def stopped(lab: Lab, address: Address) -> Iterator[None]:
    name = next(p.name for p in lab.state().processes if p.address == str(address))
    lab.send_signal(name, signal.SIGSTOP)
    try:
        yield
    finally:
        lab.send_signal(name, signal.SIGCONT)


@pytest.mark.slow
def test_stream_entries_wait_for_the_replica_of_their_master(fresh_deployment: Fresh) -> None:
    source = fresh_deployment("standalone")
    target = fresh_deployment("cluster")
    server = source.spec.shards[0].master
    route = {
        "from": {"streams": ["events"], "group": "fwd"},
        "to": {"target": "archive", "stream": "copy:{shard}:{channel}", "wait": WAIT},
    }
    key = f"copy:{server}:events"
    master, replica = holder_of(target, key)
    src, sink = client(server), client(master)
    with NodeRunner(config(source, target, route)) as runner:
        wait_until(runner.all_running, "the task forwarding", timeout=15)
        (task,) = runner.node.tasks.values()
        for n in range(10):
            src.xadd("events", {"n": str(n)})
        wait_until(lambda: src.xpending("events", "fwd")["pending"] == 0, "acknowledged")
        assert sink.xlen(key) == 10 and task.metrics.unreplicated == 0
        with stopped(target.require_lab(), replica):
            for n in range(10, 30):
                src.xadd("events", {"n": str(n)})
            wait_until(lambda: task.metrics.unreplicated >= 20, "counted as unreplicated")
            assert src.xpending("events", "fwd")["pending"] == 20  # not acknowledged
        wait_until(
            lambda: src.xpending("events", "fwd")["pending"] == 0,
            "acknowledged once the replica has them",
            timeout=20,
        )
        assert sink.xlen(key) == 30  # each once: the rewrite of a copied id is a no-op


@pytest.mark.slow
def test_pubsub_batches_wait_for_the_replica_of_their_master(fresh_deployment: Fresh) -> None:
    source = fresh_deployment("standalone")
    target = fresh_deployment("cluster")
    server = source.spec.shards[0].master
    route = {
        "from": {"channels": ["events"]},
        "to": {"target": "archive", "stream": "copy", "wait": WAIT},
    }
    master, replica = holder_of(target, "copy")
    src: redis.Redis = client(server)
    sink = client(master)
    with NodeRunner(config(source, target, route)) as runner:
        wait_until(runner.all_running, "the task forwarding", timeout=15)
        (task,) = runner.node.tasks.values()
        for n in range(10):
            src.publish("events", str(n))
        wait_until(lambda: task.metrics.forwarded == 10, "confirmed messages forwarded")
        assert task.metrics.unconfirmed_count == 0
        with stopped(target.require_lab(), replica):
            for n in range(10, 30):
                src.publish("events", str(n))
            wait_until(lambda: task.metrics.unconfirmed_count == 20, "counted as unconfirmed")
            assert sink.xlen("copy") == 30  # written all the same: pub/sub keeps nothing
        src.publish("events", "30")
        wait_until(lambda: not task.metrics.unconfirmed_episode, "confirmed again")
        assert task.metrics.unconfirmed_count == 20
