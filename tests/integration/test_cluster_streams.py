"""Stream routes on a Redis Cluster, and the cluster-only sink forms: each stream read
on the shard that holds it (one XREADGROUP per slot), entries written to the master of
their target key's slot, a stream's slot migrated while it is forwarded (nothing lost,
nothing doubled), and SPUBLISH to sharded subscribers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping

import pytest
import redis
from redis.cluster import RedisCluster

from redis_forwarder.topology.slots import key_slot
from tests.support.cluster import client, move_slots, owner_of
from tests.support.commands import cluster_node, pubsub_of, xadd, xrange
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Fresh = Callable[[str], Deployment]
STREAMS = ["{orders}:eu", "{orders}:us", "audit", "clicks", "events"]


def cluster_config(deployment: Deployment, route: Mapping[str, object]) -> dict[str, object]:
    return {
        "source": {"kind": "cluster", "addresses": [str(s.master) for s in deployment.spec.shards]},
        "route": [route],
        "node": {"topology_interval": 0.5, "id": "fwd-1"},
    }


def cluster_client(deployment: Deployment) -> RedisCluster:
    seeds = [cluster_node(a) for a in deployment.redis_nodes]
    return RedisCluster(startup_nodes=seeds, socket_timeout=5)


@pytest.mark.slow
def test_streams_on_a_cluster_follow_a_slot_migration(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("cluster")
    masters = [s.master for s in deployment.spec.shards]
    assert len({owner_of(masters, key_slot(s)) for s in STREAMS}) > 1  # several shards
    route = {
        "name": "mirror",
        "from": {"streams": STREAMS, "group": "fwd"},
        "to": {"stream": "copy:{channel}", "node_fields": True},
    }
    cluster = cluster_client(deployment)
    halt = threading.Event()
    added: dict[str, list[bytes]] = {s: [] for s in STREAMS}

    def produce() -> None:
        seq = 0
        while not halt.is_set() and seq < 20_000:
            stream = STREAMS[seq % len(STREAMS)]
            with contextlib.suppress(redis.RedisError):  # mid-migration: not added
                added[stream].append(xadd(cluster, stream, {"seq": str(seq)}))
            seq += 1
            halt.wait(0.002)

    moving = "audit"
    with NodeRunner(cluster_config(deployment, route)) as runner:
        wait_until(runner.all_running, "a task per shard holding streams", timeout=20)
        holders = {owner_of(masters, key_slot(s)) for s in STREAMS}
        assert len(runner.node.tasks) == len(holders)
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait_until(lambda: len(added[moving]) > 100, "traffic flowing")
            source = owner_of(masters, key_slot(moving))
            target = next(m for m in masters if m != source)
            move_slots(masters, source, target, range(key_slot(moving), key_slot(moving) + 1))
            moved_at = len(added[moving])
            wait_until(lambda: len(added[moving]) > moved_at + 200, "traffic after the move")
        finally:
            halt.set()
            producer.join(10)

        def copied(stream: str) -> list[bytes]:
            return [entry_id for entry_id, _ in xrange(cluster, f"copy:{stream}")]

        for stream in STREAMS:
            wait_until(
                lambda s=stream: len(copied(s)) >= len(added[s]),  # type: ignore[misc]
                f"{stream} copied",
                timeout=30,
            )
            # Ids copied, in order, each once: nothing lost across the migration.
            assert copied(stream) == added[stream], stream
        _id, fields = xrange(cluster, f"copy:{moving}", count=1)[0]
        assert fields[b"node"] == b"fwd-1" and fields[b"epoch"] == b"0"
        target_shard = next(
            s for s in runner.node.source_topology().shards if s.master.address == target
        )
        assert ("mirror", target_shard.id) in runner.node.tasks
        for stream in STREAMS:  # all acknowledged: nothing left pending in the group
            assert cluster.xpending(stream, "fwd")["pending"] == 0, stream
    cluster.close()


def test_channel_sink_spublish_reaches_sharded_subscribers(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("cluster")
    masters = [s.master for s in deployment.spec.shards]
    route = {
        "name": "fanout",
        "from": {"channels": ["orders"]},
        "to": {"channel": "copy.{channel}", "sharded": True},
    }
    owner = owner_of(masters, key_slot("copy.orders"))
    subscriber = pubsub_of(client(owner))
    subscriber.ssubscribe("copy.orders")
    with NodeRunner(cluster_config(deployment, route)) as runner:
        wait_until(runner.all_running, "the route forwarding", timeout=20)
        publisher = client(masters[0])
        got: list[bytes] = []

        def received_all() -> bool:
            publisher.publish("orders", str(len(got)))
            while (message := subscriber.get_message(timeout=0.05)) is not None:
                if message["type"] == "smessage":
                    got.append(message["data"])
            return len(got) >= 20

        wait_until(received_all, "sharded subscribers receive the copies", timeout=20)
        assert all(int(payload) >= 0 for payload in got)
    subscriber.close()
