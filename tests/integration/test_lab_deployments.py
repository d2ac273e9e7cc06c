"""Each shipped spec, brought up by the lab, is what it says: roles, replicas, slots,
sentinel answers and ZooKeeper, checked with the clients the forwarder itself uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

import pytest
import redis
from kazoo.client import KazooClient
from redis.cluster import RedisCluster

from redis_forwarder.lab.probes import zookeeper_mode
from redis_forwarder.lab.spec import CLUSTER_SLOTS
from tests.support.commands import cluster_node, command, keyslot
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]


def client(address: object) -> redis.Redis:
    host, port = str(address).rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), decode_responses=True, socket_timeout=5)


def as_map(reply: object) -> dict[str, Any]:
    """A RESP map, whether redis-py already parsed it or left it a flat list."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


def zookeeper_round_trip(deployment: Deployment) -> None:
    """Write through the first server, read it back through every server."""
    path = f"/test-{uuid.uuid4().hex}"
    assert deployment.spec.zookeeper is not None
    servers = [str(a) for a in deployment.spec.zookeeper.addresses]
    writer = KazooClient(hosts=servers[0], timeout=10)
    writer.start(timeout=10)
    try:
        writer.create(path, b"lab", makepath=True)
        for server in servers:
            reader = KazooClient(hosts=server, timeout=10)
            reader.start(timeout=10)
            try:
                reader.sync(path)
                assert reader.get(path)[0] == b"lab"
            finally:
                reader.stop()
                reader.close()
        writer.delete(path)
    finally:
        writer.stop()
        writer.close()


def test_standalone_serves_and_has_zookeeper(shared_deployment: Shared) -> None:
    deployment = shared_deployment("standalone")
    server = client(deployment.spec.shards[0].master)
    assert command(server, "ROLE")[0] == "master"
    key = f"test:{uuid.uuid4().hex}"
    server.set(key, "v")
    assert server.get(key) == "v"
    server.delete(key)
    assert zookeeper_mode(deployment.spec.zookeeper.addresses[0]) == "standalone"  # type: ignore[union-attr]
    zookeeper_round_trip(deployment)


def test_sentinel_masters_replicas_and_sentinels_agree(shared_deployment: Shared) -> None:
    deployment = shared_deployment("sentinel")
    spec = deployment.spec
    assert len(spec.shards) >= 2
    for shard in spec.shards:
        assert len(shard.replicas) == 2
        master = client(shard.master)
        role = command(master, "ROLE")
        assert role[0] == "master"
        assert sorted(f"{r[0]}:{r[1]}" for r in role[2]) == sorted(str(r) for r in shard.replicas)
        for replica_address in shard.replicas:
            replica = client(replica_address)
            role = command(replica, "ROLE")
            assert role[0] == "slave" and f"{role[1]}:{role[2]}" == str(shard.master)
        key = f"test:{uuid.uuid4().hex}"
        master.set(key, "replicated")
        for replica_address in shard.replicas:
            replica = client(replica_address)
            wait_until(
                lambda r=replica, k=key: r.get(k) == "replicated",  # type: ignore[misc]
                f"{key} on {replica_address}",
            )
        master.delete(key)
        for sentinel_address in deployment.sentinels:
            sentinel = client(sentinel_address)
            host, port = command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", shard.name)
            assert f"{host}:{port}" == str(shard.master)
            replicas = command(sentinel, "SENTINEL", "REPLICAS", shard.name)
            assert len(replicas) == 2
            # a dict from a client on one sentinel (the bool in its type is redis.Sentinel's)
            state = cast("dict[str, Any]", sentinel.sentinel_master(shard.name))
            assert state["num-other-sentinels"] == len(deployment.sentinels) - 1
            assert state["quorum"] == spec.sentinel.quorum  # type: ignore[union-attr]
    zookeeper_round_trip(deployment)


def test_cluster_shards_match_the_spec(shared_deployment: Shared) -> None:
    deployment = shared_deployment("cluster")
    spec = deployment.spec
    first = client(spec.shards[0].master)
    reply = command(first, "CLUSTER", "SHARDS")
    seen = {}
    for entry in reply:
        fields = as_map(entry)
        nodes = [as_map(n) for n in fields["nodes"]]
        master = next(n for n in nodes if n["role"] == "master")
        replicas = sorted(f"{n['ip']}:{n['port']}" for n in nodes if n["role"] == "replica")
        slots = [int(s) for s in fields["slots"]]
        ranges = list(zip(slots[::2], slots[1::2], strict=True))
        seen[f"{master['ip']}:{master['port']}"] = (replicas, ranges)
    expected_ranges = spec.slot_ranges()
    assert len(seen) == len(spec.shards) == 3
    for shard in spec.shards:
        replicas, ranges = seen[str(shard.master)]
        assert replicas == sorted(str(r) for r in shard.replicas)
        assert [tuple(r) for r in ranges] == list(expected_ranges[shard.name])
    assert sum(end - start + 1 for _, (_, rs) in seen.items() for start, end in rs) == CLUSTER_SLOTS
    for node in deployment.redis_nodes:
        info = command(client(node), "CLUSTER INFO")
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_known_nodes"]) == 6
    seeds = [cluster_node(a) for a in deployment.redis_nodes[:1]]
    cluster = RedisCluster(startup_nodes=seeds, decode_responses=True, socket_timeout=5)
    try:
        keys = [f"test:{uuid.uuid4().hex}:{i}" for i in range(50)]
        for key in keys:
            cluster.set(key, key)
        assert all(cluster.get(key) == key for key in keys)
        assert len({keyslot(cluster, k) for k in keys}) > 1
        cluster.delete(*keys[:1])
    finally:
        cluster.close()
    zookeeper_round_trip(deployment)


def test_zookeeper_ensemble_has_one_leader(shared_deployment: Shared) -> None:
    deployment = shared_deployment("zk-ensemble")
    assert deployment.spec.zookeeper is not None
    modes = [zookeeper_mode(a) for a in deployment.spec.zookeeper.addresses]
    assert sorted(modes) == ["follower", "follower", "leader"]
    zookeeper_round_trip(deployment)
    sentinel = client(deployment.sentinels[0])
    for shard in deployment.spec.shards:
        host, port = command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", shard.name)
        assert f"{host}:{port}" == str(shard.master)
