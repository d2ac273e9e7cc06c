"""Cluster chores for tests: moving slots between masters, and finding a slot's owner."""

from __future__ import annotations

import redis

from redis_forwarder.model import Address


def client(address: Address) -> redis.Redis:
    return redis.Redis(host=address.host, port=address.port, socket_timeout=5)


def move_slots(masters: list[Address], source: Address, target: Address, slots: range) -> None:
    """Migrate ``slots`` (keys and all) from ``source`` to ``target``, as redis-cli's
    reshard does: IMPORTING / MIGRATING, MIGRATE the keys, then NODE on every master."""
    source_client, target_client = client(source), client(target)
    source_id = source_client.execute_command("CLUSTER", "MYID")
    target_id = target_client.execute_command("CLUSTER", "MYID")
    for slot in slots:
        target_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := source_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source_client.execute_command(
                "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
            )
        for master in masters:
            client(master).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


def owner_of(masters: list[Address], slot: int) -> Address:
    for master in masters:
        for start, end, *_nodes in client(master).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                node = _nodes[0]
                host = node[0].decode() if isinstance(node[0], bytes) else node[0]
                return Address(host, int(node[1]))
    raise AssertionError(f"no master serves slot {slot}")
