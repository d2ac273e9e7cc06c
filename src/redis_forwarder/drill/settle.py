"""A lab at a known state: what the drill waits for before the fault and after undoing
it, so one drill's damage is never the next one's (Redis' own failover tests restore
state the same way)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis_forwarder.lab import probes
from redis_forwarder.lab.probes import ProbeFailed
from redis_forwarder.model import Address, DeploymentKind, Topology
from redis_forwarder.retry import Deadline
from redis_forwarder.work import wanted_tasks

if TYPE_CHECKING:
    from redis_forwarder.drill.target import LabTarget

SETTLE_TIMEOUT = 60.0


def settle(target: LabTarget, what: str) -> None:
    """Until the deployment is whole: every lab process runs, every forwarder node is
    a member, and every task runs on the node the assignment names (so a restored
    node has taken its share back before the drill calls it recovered)."""
    until_settled(lambda: _unsettled(target), what)


def until_settled(unsettled: Callable[[], str], what: str) -> None:
    """Poll ``unsettled`` (why the lab is not whole, "" once it is) until it says
    nothing, within SETTLE_TIMEOUT; else raise with its last reason."""
    deadline = Deadline(SETTLE_TIMEOUT)
    reason = ""
    while not deadline.expired:
        reason = unsettled()
        if not reason:
            return
        time.sleep(0.2)  # polling, with the deadline above
    raise RuntimeError(f"the lab did not settle {what} within {SETTLE_TIMEOUT:.0f}s: {reason}")


def _unsettled(target: LabTarget) -> str:
    statuses = target.lab.status(probe=False)
    dead = [s.record.name for s in statuses if not s.running]
    if dead:
        return f"not running: {', '.join(dead)}"
    try:  # one view of the deployment for this whole check
        topology = target.topology()
    except Exception as exc:  # topology in the middle of a change
        return f"topology: {exc}"
    try:
        lagging = replication_lagging(target, statuses, topology)
    except (ProbeFailed, RuntimeError) as exc:
        return f"replication: {exc}"
    if lagging:
        # A failover onto a replica that is not in sync loses data: that would be
        # the next drill's loss, not this one's.
        return f"not in sync: {', '.join(lagging)}"
    try:
        status = target.status()
    except Exception as exc:  # ZooKeeper coming back
        return f"fleet status: {exc}"
    nodes = {s.record.name for s in statuses if s.record.kind == "forwarder"}
    missing = nodes - {str(m["id"]) for m in status["members"]}
    if missing:
        return f"not members yet: {', '.join(sorted(missing))}"
    tasks = {(t["route"], t["shard"]): t for t in status["tasks"]}
    wanted = sorted(wanted_tasks(target.config.routes, topology))
    moving = [
        f"{r}@{s}" for r, s in wanted
        if (t := tasks.get((r, s))) is None or not t["running"] or t["owner"] != t["assigned"]
    ]  # fmt: skip
    unsettled = [t for t in status["tasks"] if t["owner"] != t["assigned"]]
    if moving or unsettled:
        return f"tasks moving: {', '.join(moving) or len(unsettled)}"
    # A pub/sub task's standby listening (issue 15): a node fault before it is would
    # lose what its ring was to hold, and that loss would be the set-up's, not the fault's.
    waiting = [
        f"{t['route']}@{t['shard']}"
        for t in status["tasks"]
        if t.get("standby") and not t.get("standby_reported")
    ]
    if waiting:
        return f"standbys not listening yet: {', '.join(waiting)}"
    return ""


class _OfKind(Protocol):
    kind: DeploymentKind


def replication_lagging(target: _OfKind, statuses: list[Any], topology: Topology) -> list[str]:
    """Redis nodes of the source that are not where a failover could safely go:
    a node that is not a master of ``topology`` and not a replica linked to one and
    done syncing (a restarted old master before it turns into a replica is one);
    on a cluster, also a node that does not say cluster_state:ok."""
    masters = {str(shard.master.address) for shard in topology.shards}
    lagging: list[str] = []
    for status in statuses:
        record = status.record
        if record.kind != "redis" or record.role == "sink":
            continue
        address = Address.parse(record.address)
        cluster = target.kind is DeploymentKind.CLUSTER  # (ProbeFailed when it is down)
        if cluster and probes.cluster_info(address).get("cluster_state") != "ok":
            lagging.append(f"{record.name} (cluster_state)")
            continue
        if record.address in masters:
            continue
        replication = probes.info(address, "replication")
        upstream = f"{replication.get('master_host')}:{replication.get('master_port')}"
        linked = (
            replication.get("role") == "slave"
            and upstream in masters
            and replication.get("master_link_status") == "up"
            and not int(replication.get("master_sync_in_progress", 0))
        )
        if not linked:
            lagging.append(record.name)
    return lagging
