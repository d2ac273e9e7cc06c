"""Whether a resource is whole enough for a campaign's next fault on it, so that each
fault tests a guarantee rather than a set-up that could not keep one: a second node
fault before the first one's task has a listening standby again takes an owner with
no standby; a master killed before its replica has synced takes data Redis never
copied. A fault waits at its gate (bounded) and is skipped, with the reason, if the
gate does not open (``campaign.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis_forwarder.drill import nemesis
from redis_forwarder.drill.settle import replication_lagging
from redis_forwarder.drill.workload import PUBSUB_ROUTE

if TYPE_CHECKING:
    from redis_forwarder.drill.target import LabTarget


def closed_any(target: LabTarget, resources: tuple[str, ...]) -> str:
    """Why a fault on all of ``resources`` must wait now ("" when it may strike)."""
    return next((reason for r in resources if (reason := closed(target, r))), "")


def closed(target: LabTarget, resource: str) -> str:
    """Why a fault on ``resource`` must wait now ("" when it may strike)."""
    if resource == nemesis.NODES:
        return _nodes(target)
    if resource == nemesis.ZOOKEEPER:
        return _zookeeper(target)
    if resource.startswith(nemesis.SOURCE):
        return _source(target)
    return ""


def _nodes(target: LabTarget) -> str:
    statuses = target.lab.status(probe=False)
    nodes = {s.record.name for s in statuses if s.record.kind == "forwarder"}
    down = sorted(s.record.name for s in statuses if s.record.kind == "forwarder" and not s.running)
    if down:
        return f"not running: {', '.join(down)}"
    try:
        status = target.status()
    except Exception as exc:  # ZooKeeper down: no fleet to read
        return f"fleet status: {exc}"
    missing = nodes - {str(m["id"]) for m in status["members"]}
    if missing:
        return f"not members: {', '.join(sorted(missing))}"
    for task in status["tasks"]:
        if task["route"] != PUBSUB_ROUTE:
            continue
        name = f"{task['route']}@{task['shard']}"
        if not task["running"] or task["owner"] != task["assigned"]:
            return f"{name} is moving"
        if target.standby and not task.get("standby_reported"):
            return f"{name}'s standby is not listening"
    return ""


def _zookeeper(target: LabTarget) -> str:
    statuses = [s for s in target.lab.status() if s.record.kind == "zookeeper"]
    down = [s.record.name for s in statuses if not s.running]
    if down:
        return f"not running: {', '.join(down)}"
    leaders = [s.record.name for s in statuses if s.role == "leader"]
    return "" if len(leaders) == 1 else f"{len(leaders)} ZooKeeper leaders"


def _source(target: LabTarget) -> str:
    statuses = target.lab.status(probe=False)
    down = [
        s.record.name for s in statuses if s.record.kind in ("redis", "sentinel") and not s.running
    ]
    if down:
        return f"not running: {', '.join(down)}"
    try:
        lagging = replication_lagging(target, statuses, target.topology())
    except Exception as exc:  # a failover under way
        return f"replication: {exc}"
    return f"not in sync: {', '.join(lagging)}" if lagging else ""
