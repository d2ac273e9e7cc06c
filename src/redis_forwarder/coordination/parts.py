"""The assignment in parts, one per node (layout 2, issue 18). Pure.

Layout 1 was one JSON document for the whole fleet, read by every node every second:
near 20,000 tasks it passes ZooKeeper's 1 MB limit (jute.maxbuffer) and no assignment
can be written at all, and at 500 nodes the reads alone were hundreds of MB a second.
In layout 2 each node reads its own part, and only when its watch says it changed:

- a node's part: the tasks it owns, each with its standby (or "") and the session and
  epoch it last ran under (``reborn.py``'s record: only its owner's part holds it,
  since a record names the task's owner), and the tasks it stands by for;
- a part over ``CHUNK_BYTES`` continues in chunks; every chunk carries the serial of
  the write that made the part, so a part read in the middle of a write (its chunks of
  two serials) is seen as torn and read again;
- the tasks without an owner (``StandbyWait``) are in the part ``WAITING``.

``MAX_ZNODE`` (256 KB) is the bound the issue sets for any znode; a chunk stays well
under it whatever the names' lengths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis_forwarder.coordination.assignment import Assignment
from redis_forwarder.coordination.paths import decode, encode, task_name, task_of
from redis_forwarder.model import TaskKey

LAYOUT = 2
CHUNK_BYTES = 128 * 1024
MAX_ZNODE = 256 * 1024

# task -> (node, session, epoch) it last ran under (``reborn.Ran``)
Ran = Mapping[TaskKey, tuple[str, int, int]]


@dataclass(frozen=True)
class Share:
    """One node's part: what it owns (task -> its standby or "", and the session and
    epoch it last ran under, 0 and 0 when not recorded) and what it stands by for."""

    owns: Mapping[TaskKey, tuple[str, int, int]]
    stands_by: frozenset[TaskKey]


def shares(owners: Assignment, standbys: Assignment, ran: Ran) -> dict[str, Share]:
    """Each node's part of an assignment ("": the tasks without an owner)."""
    owns: dict[str, dict[TaskKey, tuple[str, int, int]]] = {}
    for task, node in owners.items():
        record = ran.get(task)
        session, epoch = (record[1], record[2]) if record and record[0] == node else (0, 0)
        owns.setdefault(node, {})[task] = (standbys.get(task, ""), session, epoch)
    standing: dict[str, set[TaskKey]] = {}
    for task, node in standbys.items():
        if task in owners:
            standing.setdefault(node, set()).add(task)
    return {
        node: Share(owns.get(node, {}), frozenset(standing.get(node, ())))
        for node in owns.keys() | standing.keys()
    }


def merged(parts: Mapping[str, Share]) -> tuple[Assignment, Assignment, dict[TaskKey, Any]]:
    """The whole assignment again: owners, standbys, and the records of last runs."""
    owners: Assignment = {}
    standbys: Assignment = {}
    ran: dict[TaskKey, tuple[str, int, int]] = {}
    for node, share in parts.items():
        for task, (standby, session, epoch) in share.owns.items():
            owners[task] = node
            if standby:
                standbys[task] = standby
            if session:
                ran[task] = (node, session, epoch)
    return owners, standbys, ran


def contents(share: Share) -> list[dict[str, Any]]:
    """The part's chunks, without their serial: each under ``CHUNK_BYTES`` encoded."""
    chunks: list[dict[str, Any]] = [{"owns": {}, "stands_by": []}]
    size = 0
    entries: list[tuple[str, str, Any]] = [
        ("owns", task_name(task), list(value)) for task, value in sorted(share.owns.items())
    ]
    entries += [("stands_by", task_name(task), None) for task in sorted(share.stands_by)]
    for kind, name, value in entries:
        cost = len(name) + (len(json.dumps(value)) if value is not None else 0) + 8
        if size + cost > CHUNK_BYTES and size:
            chunks.append({"owns": {}, "stands_by": []})
            size = 0
        if kind == "owns":
            chunks[-1]["owns"][name] = value
        else:
            chunks[-1]["stands_by"].append(name)
        size += cost
    return chunks


def documents(chunks: list[dict[str, Any]], serial: int) -> list[bytes]:
    """The znodes' data: every chunk with the serial; the first with the count."""
    return [
        encode({**chunk, "serial": serial, **({"chunks": len(chunks)} if i == 0 else {})})
        for i, chunk in enumerate(chunks)
    ]


def chunk_count(first: bytes | None) -> int:
    """How many chunks a part's first znode says it has (0: unreadable)."""
    document = decode(first)
    count = document.get("chunks") if isinstance(document, dict) else None
    return count if isinstance(count, int) and count > 0 else 0


def share_of(datas: list[bytes | None]) -> tuple[Share, int] | None:
    """A part from its chunks' data, and its serial; None when it does not add up: a
    chunk missing, unreadable, or of another write (read in the middle of one)."""
    documents_ = [decode(data) for data in datas]
    if not documents_ or not all(isinstance(d, dict) for d in documents_):
        return None
    serials = {d.get("serial") for d in documents_}
    if len(serials) != 1 or len(documents_) != chunk_count(datas[0]):
        return None
    owns: dict[TaskKey, tuple[str, int, int]] = {}
    stands_by: set[TaskKey] = set()
    try:
        for document in documents_:
            for name, (standby, session, epoch) in (document.get("owns") or {}).items():
                owns[task_of(name)] = (str(standby), int(session), int(epoch))
            stands_by.update(task_of(name) for name in document.get("stands_by") or ())
    except (TypeError, ValueError, AttributeError):
        return None
    serial = serials.pop()
    return Share(owns, frozenset(stands_by)), serial if isinstance(serial, int) else 0


def marker(shard_names: dict[str, Any] | None) -> bytes:
    """``{root}/assignment`` in layout 2: the layout, and the controller's shard names
    (read by every node: it changes only with them)."""
    return encode({"layout": LAYOUT, "shards": shard_names})


def layout_of(data: bytes | None) -> int:
    """The layout of ``{root}/assignment``'s data: 2, or 1 (an older controller's whole
    document, or none yet)."""
    document = decode(data)
    layout = document.get("layout") if isinstance(document, dict) else None
    return layout if isinstance(layout, int) else 1


def folder_document(serial: int, controller: str, complete: bool) -> bytes:
    """``{root}/parts``'s data: the serial, its controller, and whether every part of
    it is written (a write too large for one transaction takes several)."""
    return encode({"serial": serial, "controller": controller, "complete": complete})


def folder_serial(data: bytes | None) -> int:
    document = decode(data)
    serial = document.get("serial") if isinstance(document, dict) else None
    return serial if isinstance(serial, int) else 0
