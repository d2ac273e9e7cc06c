"""The cluster drills that change the cluster's shape under load: a drill stream's slot
migrating between masters, and a shard joining (then leaving). Each returns its undo,
so the lab is left as the drill found it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from redis_forwarder.drill.scenarios import Undo
from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.lab.reshard import forget, move_slots
from redis_forwarder.lab.spec import CLUSTER_BUS_PORT_OFFSET
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline
from redis_forwarder.topology.slots import key_slot

if TYPE_CHECKING:
    from redis_forwarder.drill.target import LabTarget

MEET_TIMEOUT = 15.0


class ClusterReshaper:
    def __init__(self, target: LabTarget) -> None:
        self.target = target

    def _drill_stream(self) -> tuple[str, int, Address]:
        """A drill stream on the drill shard (the first stream when none is), its slot
        and the master serving it."""
        home = self.target.master(self.target.drill_shard)
        keys = [lane.key for lane in self.target.workload.lanes if lane.stream]
        owners = {key: self.target.locate(key) for key in keys}
        key = next((k for k in keys if owners[k] == home), keys[0])
        return key, key_slot(key), owners[key]

    def _move(self, slot: int, source: Address, destination: Address, why: str) -> None:
        move_slots(self.target.masters(), source, destination, [slot])
        self.target.note(f"slot {slot} moved {source} -> {destination} ({why})")

    def migrate_drill_stream(self) -> Undo:
        key, slot, source = self._drill_stream()
        others = sorted(m for m in self.target.masters() if m != source)
        destination = others[0]
        self._move(slot, source, destination, f"{key} migrates")
        return lambda: self._move(slot, destination, source, f"{key} migrates back")

    def add_shard(self) -> Undo:
        target = self.target
        spec = target.lab_spec()
        nodes = target.cluster_nodes()
        highest = max(n.port for n in nodes)
        address = Address(nodes[0].host, highest + 1)
        name = f"added-{int(time.time())}"  # a fresh name: no old nodes.conf to reuse
        target.lab.add_redis_node(spec, name, address)
        target.note(f"started {name} on {address} (bus {address.port + CLUSTER_BUS_PORT_OFFSET})")
        redis_call(nodes[0], "CLUSTER", "MEET", address.host, address.port, timeout=2)
        self._wait_known(address, nodes)
        target.note(f"CLUSTER MEET {address}: every node knows it")
        key, slot, source = self._drill_stream()
        self._move(slot, source, address, f"{key} to the new shard")

        def undo() -> None:
            self._move(slot, address, source, f"{key} back from the new shard")
            forget(target.cluster_nodes(), address)
            target.lab.remove(name)
            target.note(f"{name} forgotten by every node and stopped")

        return undo

    def _wait_known(self, address: Address, nodes: list[Address]) -> None:
        """Until every node knows the new one, and the new one knows every node and
        says cluster_state:ok (before that it answers a MIGRATE with CLUSTERDOWN)."""
        deadline = Deadline(MEET_TIMEOUT)
        reason = ""
        while not deadline.expired:
            try:
                views = {n: redis_call(n, "CLUSTER", "NODES", timeout=1) for n in nodes}
                own_view = redis_call(address, "CLUSTER", "NODES", timeout=1)
                state = redis_call(address, "CLUSTER", "INFO", timeout=1)
            except ProbeFailed as exc:
                reason = str(exc)
            else:
                unaware = [str(n) for n, view in views.items() if f" {address}@" not in view]
                unknown = [str(n) for n in nodes if f" {n}@" not in own_view]
                if not unaware and not unknown and "cluster_state:ok" in state:
                    return
                reason = f"unaware of it: {unaware}; it does not know: {unknown}"
            time.sleep(0.1)  # polling, with the deadline above
        raise RuntimeError(
            f"{address} did not join the cluster within {MEET_TIMEOUT:.0f}s: {reason}"
        )
