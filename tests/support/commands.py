"""Typed doors to the few redis-py calls its sources leave unannotated (``execute_command``,
``pubsub``, ``ClusterNode``, ``RedisCluster.keyslot``) or type for any client (``xadd``,
``xrange``: str or bytes, or None), so the tests stay under mypy strict without an ignore
or a cast at every call. Each does exactly the call it names."""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.client import PubSub
from redis.cluster import ClusterNode, RedisCluster

from redis_forwarder.model import Address

Client = redis.Redis | RedisCluster
Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as a client without ``decode_responses`` reads it: (id, fields)."""


def command(client: Client, *args: Any) -> Any:
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


def xadd(client: Client, name: str, fields: dict[Any, Any], **options: Any) -> bytes:
    """``client.xadd(name, fields, **options)`` on a client that does not decode: the new id."""
    return cast(bytes, client.xadd(name, fields, **options))


def xrange(client: Client, name: str, count: int | None = None) -> list[Entry]:
    """``client.xrange(name, count=count)`` on a client that does not decode: every entry
    (redis-py answers a list, empty for a missing stream)."""
    return cast(list[Entry], client.xrange(name, count=count))
