"""Typed doors to the few redis-py calls its sources leave unannotated (``execute_command``,
``pubsub``, ``ClusterNode``, ``RedisCluster.keyslot``), so the tests stay under mypy strict
without an ignore at every call. Each does exactly the call it names."""

from __future__ import annotations

from typing import Any

import redis
from redis.client import PubSub
from redis.cluster import ClusterNode, RedisCluster

from redis_forwarder.model import Address


def command(client: redis.Redis | RedisCluster, *args: Any) -> Any:
    """``client.execute_command(*args)``: the reply's shape is the command's, hence Any."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def pubsub_of(client: redis.Redis, *, ignore_subscribe_messages: bool = False) -> PubSub:
    """``client.pubsub(...)``."""
    subscriber: PubSub = client.pubsub(ignore_subscribe_messages=ignore_subscribe_messages)  # type: ignore[no-untyped-call]
    return subscriber


def cluster_node(address: Address) -> ClusterNode:
    """``ClusterNode(host, port)`` for a startup node."""
    return ClusterNode(address.host, address.port)  # type: ignore[no-untyped-call]


def keyslot(cluster: RedisCluster, key: str | bytes) -> int:
    """``cluster.keyslot(key)``: the slot redis-py computes for ``key``."""
    slot: int = cluster.keyslot(key)  # type: ignore[no-untyped-call]
    return slot
