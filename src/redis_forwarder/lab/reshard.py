"""Changing a running cluster's shape, as an operator would: moving slots between
masters (what ``redis-cli --cluster reshard`` does), finding a slot's owner, and
letting a node go (``CLUSTER FORGET`` everywhere). Used by drills and tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.model import Address

MIGRATE_TIMEOUT_MS = 5000
KEYS_PER_MIGRATE = 100


def _call(address: Address, *command: Any) -> Any:
    return redis_call(address, *command, timeout=MIGRATE_TIMEOUT_MS / 1000 + 1)


def move_slots(
    masters: Iterable[Address], source: Address, target: Address, slots: Iterable[int]
) -> None:
    """Migrate ``slots`` (keys and all) from ``source`` to ``target``: IMPORTING /
    MIGRATING, MIGRATE the keys, then SETSLOT NODE on every master (the target first,
    so that no master points clients at a target that does not yet own the slot)."""
    source_id = _call(source, "CLUSTER", "MYID")
    target_id = _call(target, "CLUSTER", "MYID")
    others = [m for m in masters if m not in (source, target)]
    for slot in slots:
        _call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := _call(source, "CLUSTER", "GETKEYSINSLOT", slot, KEYS_PER_MIGRATE):
            _call(
                source, "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS,
                "KEYS", *keys,
            )  # fmt: skip
        _call(target, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for master in (source, *others):
            try:
                _call(master, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
            except ProbeFailed as exc:
                # A master whose last slot just left turns into a replica of the slot's
                # new owner (cluster-allow-replica-migration), and knows already.
                if "only with masters" not in str(exc):
                    raise


def slot_owners(
    node: Address, timeout: float = MIGRATE_TIMEOUT_MS / 1000 + 1
) -> dict[int, Address]:
    """Every served slot's master, as ``node``'s CLUSTER SLOTS says (raises ProbeFailed
    when it does not answer)."""
    owners: dict[int, Address] = {}
    for start, end, master, *_replicas in redis_call(node, "CLUSTER", "SLOTS", timeout=timeout):
        address = Address(str(master[0]), int(master[1]))
        owners.update(dict.fromkeys(range(int(start), int(end) + 1), address))
    return owners


def slot_owner(nodes: Iterable[Address], slot: int) -> Address:
    """The master serving ``slot``, as the first node that answers says."""
    last_error: Exception | None = None
    for node in nodes:
        try:
            owners = slot_owners(node)
        except ProbeFailed as exc:  # this node is down: ask the next
            last_error = exc
            continue
        if slot in owners:
            return owners[slot]
    raise RuntimeError(f"no node names the owner of slot {slot}: {last_error}")


def forget(nodes: Iterable[Address], gone: Address) -> None:
    """Make every node in ``nodes`` forget ``gone`` (which must serve no slots)."""
    node_id = _call(gone, "CLUSTER", "MYID")
    for node in nodes:
        if node != gone:
            _call(node, "CLUSTER", "FORGET", node_id)
