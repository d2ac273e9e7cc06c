"""What changed between two topologies, as events that scripts and the controller read.

Pure. Each :class:`Change` is one fact: a shard appeared or went away, its master
moved, a replica joined or left, its slots changed. ``to_json`` is the stable shape
printed by ``redis-forwarder topology --watch`` (docs/topology.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis_forwarder.model import Shard, SlotRange, Topology


class ChangeKind(StrEnum):
    SHARD_ADDED = "shard-added"
    SHARD_REMOVED = "shard-removed"
    MASTER_CHANGED = "master-changed"
    REPLICA_ADDED = "replica-added"
    REPLICA_REMOVED = "replica-removed"
    SLOTS_MOVED = "slots-moved"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    shard: str
    at: float
    master: str = ""
    previous: str = ""
    replica: str = ""
    slots: tuple[SlotRange, ...] = ()
    previous_slots: tuple[SlotRange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"event": str(self.kind), "shard": self.shard}
        if self.kind in (ChangeKind.SHARD_ADDED, ChangeKind.SHARD_REMOVED):
            event["master"] = self.master
        elif self.kind is ChangeKind.MASTER_CHANGED:
            event["master"] = self.master
            event["previous"] = self.previous
        elif self.kind in (ChangeKind.REPLICA_ADDED, ChangeKind.REPLICA_REMOVED):
            event["replica"] = self.replica
        else:
            event["slots"] = [list(r) for r in self.slots]
            event["previous"] = [list(r) for r in self.previous_slots]
        event["at"] = round(self.at, 3)
        return event


def diff(old: Topology, new: Topology, at: float) -> list[Change]:
    """Every change from ``old`` to ``new``, shard by shard in id order."""
    changes: list[Change] = []
    old_by_id = {s.id: s for s in old.shards}
    new_by_id = {s.id: s for s in new.shards}
    for shard_id in sorted(old_by_id.keys() | new_by_id.keys()):
        before, after = old_by_id.get(shard_id), new_by_id.get(shard_id)
        if before is None and after is not None:
            changes.append(
                Change(
                    ChangeKind.SHARD_ADDED,
                    shard_id,
                    at,
                    master=str(after.master),
                    slots=after.slots,
                )
            )
        elif after is None and before is not None:
            changes.append(
                Change(ChangeKind.SHARD_REMOVED, shard_id, at, master=str(before.master))
            )
        elif before is not None and after is not None:
            changes.extend(_shard_changes(before, after, at))
    return changes


def _shard_changes(before: Shard, after: Shard, at: float) -> list[Change]:
    changes = []
    if before.master != after.master:
        changes.append(
            Change(
                ChangeKind.MASTER_CHANGED,
                after.id,
                at,
                master=str(after.master),
                previous=str(before.master),
            )
        )
    old_replicas = {str(r) for r in before.replicas}
    new_replicas = {str(r) for r in after.replicas}
    for replica in sorted(new_replicas - old_replicas):
        changes.append(Change(ChangeKind.REPLICA_ADDED, after.id, at, replica=replica))
    for replica in sorted(old_replicas - new_replicas):
        changes.append(Change(ChangeKind.REPLICA_REMOVED, after.id, at, replica=replica))
    if before.slot_set() != after.slot_set():
        changes.append(
            Change(
                ChangeKind.SLOTS_MOVED, after.id, at, slots=after.slots, previous_slots=before.slots
            )
        )
    return changes
