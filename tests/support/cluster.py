"""Cluster chores for tests: moving slots between masters, and finding a slot's owner
(the package's own, which drills use too)."""

from __future__ import annotations

import redis

from redis_forwarder.lab.reshard import move_slots, slot_owner
from redis_forwarder.model import Address

__all__ = ["client", "move_slots", "owner_of"]


def client(address: Address) -> redis.Redis:
    return redis.Redis(host=address.host, port=address.port, socket_timeout=5)


def owner_of(masters: list[Address], slot: int) -> Address:
    return slot_owner(masters, slot)
