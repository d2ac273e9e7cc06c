"""Waiting until a deployment is ready, as a list of named checks polled to a deadline.

A :class:`Check` answers ``None`` when its condition holds, or a short reason why not.
:func:`wait_for` polls every pending check until all hold, reporting progress, and
gives up at the deadline naming what was still pending and why. A watchdog runs on
every round so that a process that dies is reported at once, not at the deadline.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis_forwarder.errors import NotReadyError
from redis_forwarder.lab import probes
from redis_forwarder.lab.probes import ProbeFailed
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline

POLL_INTERVAL = 0.1
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    description: str
    probe: Callable[[], str | None]

    def run(self) -> str | None:
        try:
            return self.probe()
        except ProbeFailed as exc:
            return str(exc)


def wait_for(
    checks: list[Check],
    timeout: float,
    *,
    progress: Progress | None = None,
    watchdog: Callable[[], None] | None = None,
    stage: str = "",
) -> None:
    """Poll until every check holds. Raise :class:`NotReadyError` after ``timeout`` s."""
    deadline = Deadline(timeout)
    pending = list(checks)
    reasons: dict[str, str] = {}
    total = len(checks)
    while True:
        if watchdog is not None:
            watchdog()
        still = []
        for check in pending:
            reason = check.run()
            if reason is not None:
                still.append(check)
                reasons[check.description] = reason
        pending = still
        if not pending:
            return
        if progress is not None:
            done = total - len(pending)
            progress(f"{stage}{done}/{total} ready; waiting for {pending[0].description}")
        if deadline.expired:
            raise NotReadyError(
                timeout, [f"{c.description}: {reasons[c.description]}" for c in pending]
            )
        time.sleep(min(POLL_INTERVAL, deadline.remaining))


def redis_answers(address: Address) -> Check:
    def probe() -> str | None:
        return None if probes.redis_call(address, "PING") else "no PONG"

    return Check(f"redis {address} answers PING", probe)


def replica_linked(replica: Address, master: Address) -> Check:
    def probe() -> str | None:
        fields = probes.info(replica, "replication")
        if fields.get("role") != "slave":
            return f"role is {fields.get('role')}"
        linked_to = Address(str(fields.get("master_host")), int(fields.get("master_port", 0)))
        if linked_to != master:
            return f"replicates {linked_to}"
        if fields.get("master_link_status") != "up":
            return f"master link is {fields.get('master_link_status')}"
        return None

    return Check(f"replica {replica} linked to {master}", probe)


def cluster_healthy(node: Address, known_nodes: int, slots: int) -> Check:
    def probe() -> str | None:
        fields = probes.cluster_info(node)
        if fields.get("cluster_state") != "ok":
            return f"cluster_state is {fields.get('cluster_state')}"
        if int(fields.get("cluster_known_nodes", 0)) != known_nodes:
            return f"knows {fields.get('cluster_known_nodes')} of {known_nodes} nodes"
        if int(fields.get("cluster_slots_ok", 0)) != slots:
            return f"{fields.get('cluster_slots_ok')} of {slots} slots ok"
        return None

    return Check(f"cluster node {node} sees state ok", probe)


def cluster_view(node: Address) -> dict[Address, Address | None]:
    """``CLUSTER NODES`` seen from ``node``: each node's address and, for a replica, its
    master's address (None for a master). Nodes still in handshake are left out."""
    text = str(probes.redis_call(node, "CLUSTER", "NODES"))
    rows = [line.split() for line in text.splitlines() if line.strip()]
    address_of = {row[0]: _cluster_address(row[1]) for row in rows}
    return {
        address_of[row[0]]: address_of.get(row[3]) if row[3] != "-" else None
        for row in rows
        if "handshake" not in row[2]
    }


def _cluster_address(field: str) -> Address:
    # ip:port@cport[,hostname]
    return Address.parse(field.split("@", 1)[0])


def cluster_met(node: Address, expected: set[Address]) -> Check:
    def probe() -> str | None:
        missing = sorted(str(a) for a in expected - set(cluster_view(node)))
        return f"does not know {missing}" if missing else None

    return Check(f"cluster node {node} knows every node", probe)


def cluster_agrees(node: Address, expected: dict[Address, Address | None]) -> Check:
    """``node`` sees every node, and sees each replica attached to its own master."""

    def probe() -> str | None:
        view = cluster_view(node)
        wrong = sorted(str(a) for a, master in expected.items() if view.get(a, a) != master)
        return f"does not yet see the roles of {wrong}" if wrong else None

    return Check(f"cluster node {node} sees every replica's master", probe)


def sentinel_agrees(
    sentinel: Address,
    master_name: str,
    master: Address,
    replicas: tuple[Address, ...],
    other_sentinels: int,
) -> Check:
    def probe() -> str | None:
        fields = _pairs(probes.redis_call(sentinel, "SENTINEL", "MASTER", master_name))
        seen = Address(fields.get("ip", "?"), int(fields.get("port", 0)))
        if seen != master:
            return f"believes the master is {seen}"
        if fields.get("flags") != "master":
            return f"flags the master {fields.get('flags')}"
        if int(fields.get("num-other-sentinels", 0)) < other_sentinels:
            return f"knows {fields.get('num-other-sentinels')} of {other_sentinels} other sentinels"
        known = {
            Address(r["ip"], int(r["port"]))
            for r in map(_pairs, probes.redis_call(sentinel, "SENTINEL", "REPLICAS", master_name))
            if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
        }
        missing = sorted(str(r) for r in set(replicas) - known)
        if missing:
            return f"does not yet see replicas {missing} as healthy"
        return None

    return Check(f"sentinel {sentinel} agrees on {master_name}", probe)


def zookeeper_serving(address: Address, ensemble: bool) -> Check:
    def probe() -> str | None:
        mode = probes.zookeeper_mode(address)
        if ensemble and mode not in ("leader", "follower"):
            return f"mode is {mode}, not part of the ensemble"
        return None

    return Check(f"zookeeper {address} serving", probe)


def _pairs(reply: object) -> dict[str, str]:
    """Sentinel replies come as a flat [key, value, ...] list or, in RESP3, a map."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    if isinstance(reply, list):
        return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}
    return {}


def forwarder_ready(address: Address, node_id: str) -> Check:
    def probe() -> str | None:
        body = probes.forwarder_ready(address)
        if body.get("zookeeper") != "connected":
            return f"ZooKeeper session {body.get('zookeeper', 'unknown')}"
        return None if body.get("ready") else "tasks not forwarding yet"

    return Check(f"forwarder {node_id} ready ({address}/readyz)", probe)


def fleet_settled(zookeeper: str, root: str, nodes: set[str], routes: int) -> Check:
    """Every forwarder node of the spec is a member, and the fleet's assignment is in
    force: every task assigned (loads differ by at most one: every node counted), owned
    by the node it is assigned to, and running there, and its standby (if it has one)
    reports standing by. A node's /readyz alone says only
    that what *it* owns forwards: a node that owns nothing yet is ready too."""

    def probe() -> str | None:
        # kazoo is imported only by a lab that has forwarders
        from redis_forwarder.coordination.fleet import fleet_status
        from redis_forwarder.coordination.fleet_client import FleetClient
        from redis_forwarder.coordination.paths import Paths
        from redis_forwarder.errors import CoordinationError

        try:
            with FleetClient(zookeeper, timeout=2 * probes.PROBE_TIMEOUT) as client:
                status = fleet_status(client, Paths(root), cut_off_after=float("inf"))
        except CoordinationError as exc:
            raise ProbeFailed(f"ZooKeeper at {zookeeper}: {exc}") from exc
        return fleet_unsettled(status, nodes, routes)

    return Check(f"fleet {root}: every task owned and running", probe)


def fleet_unsettled(status: dict[str, Any], nodes: set[str], routes: int) -> str | None:
    """Why the fleet (``status --json``'s document) is not settled yet, or None."""
    missing = sorted(nodes - {str(m.get("id")) for m in status["members"]})
    if missing:
        return f"not members yet: {', '.join(missing)}"
    tasks = status["tasks"]
    if len(tasks) < routes:
        return f"{len(tasks)} tasks for {routes} routes"
    for task in tasks:
        name = f"{task['route']}@{task['shard']}"
        if task["assigned"] is None:
            return f"{name} not assigned"
        if task["owner"] != task["assigned"] or not task["running"]:
            return f"{name} not running on {task['assigned']}"
        # Issue 15: a drill that kills an owner at once must find its standby in place.
        if task.get("standby") and not task.get("standby_reported"):
            return f"{name}: its standby {task['standby']} has not reported yet"
    loads = Counter({node: 0 for node in nodes})
    loads.update(str(task["assigned"]) for task in tasks)
    if max(loads.values()) - min(loads.values()) > 1:
        return f"assignment not spread yet: {dict(sorted(loads.items()))}"
    return None
