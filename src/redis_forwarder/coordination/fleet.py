"""The fleet as ZooKeeper holds it, for operators: ``status`` reads it, ``drain`` /
``undrain`` / ``pause`` / ``resume`` / ``rebalance`` write the requests the controller
acts on (within a cycle: its watches wake it).

The status document (stable; docs/cli.md):

    {"controller": "n1",
     "members": [{"id": "n1", "host": "...", "pid": 123, "version": "0.1.0",
                  "metrics": null, "config": "3f2a...", "drained": false,
                  "config_drift": false, "started_at": 1763900000.1,
                  "reported_at": 1763900012.3, "silent_for": {"source": 0.4},
                  "cut_off": []}],
     "drained": [], "paused": [], "assignment_serial": 4,
     "tasks": [{"route": "orders", "shard": "alpha", "assigned": "n1", "owner": "n1",
                "standby": "n2", "standby_reported": true,
                "epoch": 4294967312, "running": true, "forwarded": 1234,
                "rate": 812.5, "lag": 0.0021, "last_message_at": 1763900000.5,
                "gaps": 0, "gap_since": null}]}

``config_drift`` marks members whose config fingerprint differs from the
controller's: the controller assigns them nothing. ``reported_at``: when the member
last wrote its progress (every cycle). ``silent_for``: per Redis deployment (``source``
or a target's name), seconds since any of its servers answered the member, as of that
report; ``cut_off``: the deployments it is cut off from (``assignment.cut_off``, after
``cut_off_after`` seconds): the controller assigns such a member nothing. A task is
``running`` (with its counters) only as its owner reported it, for the epoch it owns,
within ``STALE_AFTER`` seconds. ``standby``: the node the assignment names to stand by
for the task (pub/sub routes in a fleet of two or more, issue 15; else null);
``standby_reported``: that node's fresh report says it stands by for it.
``gap_since``: when the task's open gap began (wall clock), null while it forwards.
"""

from __future__ import annotations

import time
from typing import Any

from redis_forwarder.coordination import parts, progress_chunks
from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.assignment import Assignment, cut_off
from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths, node_of_part
from redis_forwarder.coordination.zk import Znode, ZooKeeperError

STALE_AFTER = 5.0  # seconds: a task is "running" only in its owner's report this recent


def fleet_status(client: FleetClient, paths: Paths, cut_off_after: float) -> dict[str, Any]:
    holder = client.lock_holder(paths.controller)
    members: list[dict[str, Any]] = []
    names = sorted(client.children(paths.members))
    for znode in client.get_many([f"{paths.members}/{name}" for name in names]):
        document = znodes.decode(znode.data) if znode else None
        if isinstance(document, dict):
            members.append(document)
    drained = sorted(znodes.unquote_name(n) for n in client.children(paths.drained))
    paused = sorted(znodes.unquote_name(n) for n in client.children(paths.paused))
    controller_config = next((m.get("config") for m in members if m.get("id") == holder), None)
    for member in members:
        member["drained"] = member.get("id") in drained
        member["config_drift"] = (
            controller_config is not None and member.get("config") != controller_config
        )
    assignment, standbys, serial = read_assignment(client, paths)
    # Each member's report of its tasks, if it is fresh: a node writes it every cycle
    # (about a second), so an old one is a node that cannot reach ZooKeeper, or a
    # ZooKeeper that has just woken up with sessions it has not expired yet.
    now = time.time()
    reports: dict[str, dict[str, Any]] = {}
    ids = [str(m.get("id")) for m in members]
    progress = client.get_many([paths.progress_of(node) for node in ids])
    whole = _whole_reports(client, paths, ids, progress)
    for member, znode, document in zip(members, progress, whole, strict=True):
        member["reported_at"] = znode.mtime if znode else None
        member["silent_for"] = znodes.silence_of(document)
        if isinstance(document, dict) and znode and now - znode.mtime <= STALE_AFTER:
            reports[str(member.get("id"))] = document
    cut = cut_off(
        {
            str(m.get("id")): (m["reported_at"], m["silent_for"])
            for m in members
            if m["reported_at"] is not None and m["silent_for"]
        },
        cut_off_after,
    )
    for member in members:
        member["cut_off"] = cut.get(str(member.get("id")), [])
    owners: dict[tuple[str, str], tuple[str | None, int]] = {}
    names = client.children(paths.owners)
    for name, znode in zip(
        names, client.get_many([f"{paths.owners}/{n}" for n in names]), strict=True
    ):
        if znode is not None:
            claim = znodes.decode(znode.data) or {}
            owners[znodes.task_of(name)] = (claim.get("node"), znode.czxid)
    tasks = []
    for task in sorted(set(assignment) | set(owners)):
        owner, epoch = owners.get(task, (None, None))
        standby = standbys.get(task)
        standby_report = reports.get(standby or "", {})
        standing_by = znodes.standing_by_of(standby_report)
        ring = znodes.ring_of(standby_report, f"{task[0]}@{task[1]}")
        seen = reports.get(owner or "", {}).get(f"{task[0]}@{task[1]}", {})
        if seen.get("epoch") != epoch:
            seen = {}  # the owner's report is of an earlier ownership (or none)
        tasks.append(
            {
                "route": task[0],
                "shard": task[1],
                "assigned": assignment.get(task),
                "owner": owner,
                "standby": standby,
                "standby_reported": task in standing_by,
                # its state, where it listens, its ring: seconds, messages, bytes, evicted
                "standby_ring": ring,
                "epoch": epoch,
                "running": bool(seen.get("running", False)),
                "state": seen.get("state"),  # connecting, forwarding, backing-off, ...
                "forwarded": seen.get("forwarded", 0),
                "rate": seen.get("rate", 0.0),
                "lag": seen.get("lag", 0.0),
                "last_message_at": seen.get("last_message_at") or None,
                "gaps": seen.get("gaps", 0),
                "gap_since": seen.get("gap_since"),  # its open gap's start, or None
                # A takeover by a standby: replayed from its ring, matched twice (so
                # written twice), seconds it could not account for.
                "replayed": seen.get("replayed", 0),
                "ambiguous": seen.get("ambiguous", 0),
                "unaccounted_seconds": seen.get("unaccounted_seconds", 0.0),
                # A bridge's (issue 20), once it acts: echoes dropped, copies never
                # heard back, stream entries from the other side skipped, hop drops.
                "bridged": seen.get("bridged"),
            }
        )
    return {
        "controller": holder,
        "members": members,
        "drained": drained,
        "paused": paused,
        "assignment_serial": serial,
        "tasks": tasks,
    }


def _whole_reports(
    client: FleetClient, paths: Paths, ids: list[str], firsts: list[Znode | None]
) -> list[Any]:
    """Each report whole (``progress_chunks``): the chunks past the first read at once;
    one read in the middle of a write is None (this status shows no report of it)."""
    decoded = [znodes.decode(z.data) if z else None for z in firsts]
    counts = [progress_chunks.count(d) for d in decoded]
    rest = client.get_many(
        [
            paths.progress_chunk(node, k)
            for node, n in zip(ids, counts, strict=True)
            for k in range(1, n)
        ]
    )
    reports: list[Any] = []
    at = 0
    for first, count in zip(decoded, counts, strict=True):
        chunks = [first, *(znodes.decode(z.data) if z else None for z in rest[at : at + count - 1])]
        at += count - 1
        reports.append(progress_chunks.joined(chunks) if first is not None else None)
    return reports


def read_assignment(client: FleetClient, paths: Paths) -> tuple[Assignment, Assignment, int]:
    """Owners, standbys and the serial, in either layout (``parts.py``). The parts are
    read at once; one read in the middle of a write is read again (a few times)."""
    marker = client.get(paths.assignment)
    data = marker.data if marker else None
    if parts.layout_of(data) != parts.LAYOUT:
        return (
            znodes.assignment_of(data)[0],
            znodes.standbys_of(data),
            znodes.assignment_of(data)[1],
        )
    for _ in range(5):
        folder = client.get(paths.parts)
        names = client.children(paths.parts)
        firsts = client.get_many([f"{paths.parts}/{n}" for n in names])
        shares: dict[str, parts.Share] = {}
        for name, first in zip(names, firsts, strict=True):
            data = first.data if first else None
            count = parts.chunk_count(data)
            rest = client.get_many([f"{paths.parts}/{name}/{i}" for i in range(1, count)])
            found = parts.share_of([data, *(z.data if z else None for z in rest)])
            if found is None:
                break
            shares[node_of_part(name)] = found[0]
        else:
            owners, standbys, _ran = parts.merged(shares)
            serial = parts.folder_serial(folder.data if folder else None)
            return owners, standbys, serial  # "": waiting for its standby (as layout 1)
    raise ZooKeeperError(f"{paths.parts}: the assignment changed under every read; try again")


def set_flag(client: FleetClient, folder: str, name: str, on: bool, note: dict[str, Any]) -> bool:
    """Add or remove ``folder/name``; return whether anything changed."""
    path = f"{folder}/{znodes.quote_name(name)}"
    if on:
        changed = not client.exists(path)
        client.put(path, znodes.encode(note))
        return changed
    return client.remove(path)
