"""A node's progress report in chunks, each well under the 256 KB bound (issue 18). Pure.

A report is about 450 bytes a task (its counters) and 150 a standby: a node of 2,000
tasks (20,000 on ten nodes) wrote a 900 KB znode, and past about 2,300 ZooKeeper
refused it (1 MB): the node's every cycle failed there, before the controller's step,
and a fleet whose first node took every task at start could never reassign them (the
fleet bench, at 5,000 tasks).

The first chunk is ``{root}/progress/{node}``, the znode every reader knows (an older
release reads it alone: a report that fits in one chunk is what it always was). It
holds the report's own keys (session, silences) and as many tasks and standbys as fit,
with ``chunks`` (how many) and ``stamp`` (which write); the others are siblings
``{node}@1..`` (ephemeral znodes have no children; "@" is quoted in every node's name),
each with the same stamp. The writer writes the others first and the first last, so a
reader woken by the first finds the rest already there; a reader that finds two
stamps read in the middle of the next write, and reads again.
"""

from __future__ import annotations

import json
from typing import Any

from redis_forwarder.coordination.paths import STANDING_BY

CHUNK_BYTES = 128 * 1024
CHUNKS, STAMP = "chunks", "stamp"


def split(report: dict[str, Any], stamp: int) -> list[dict[str, Any]]:
    """``report`` in chunks of at most about ``CHUNK_BYTES`` encoded, the first with the
    report's own keys; every chunk stamped."""
    tasks = {k: v for k, v in report.items() if "@" in k and isinstance(v, dict)}
    standing = report.get(STANDING_BY)
    standing = standing if isinstance(standing, dict) else {}
    own = {k: v for k, v in report.items() if k not in tasks and k != STANDING_BY}
    chunks: list[dict[str, Any]] = [dict(own)]
    if STANDING_BY in report:
        chunks[0][STANDING_BY] = {}
    size = len(json.dumps(own))
    entries: list[tuple[str | None, str, Any]] = [(None, k, v) for k, v in tasks.items()]
    entries += [(STANDING_BY, k, v) for k, v in standing.items()]
    for section, key, value in entries:
        cost = len(key) + len(json.dumps(value)) + 8
        if size + cost > CHUNK_BYTES and size:
            chunks.append({})
            size = 0
        if section is None:
            chunks[-1][key] = value
        else:
            chunks[-1].setdefault(STANDING_BY, {})[key] = value
        size += cost
    for chunk in chunks:
        chunk[STAMP] = stamp
    chunks[0][CHUNKS] = len(chunks)
    return chunks


def count(first: Any) -> int:
    """How many chunks a report's first znode says it has (1 for a report of an older
    release, or one that says nothing)."""
    found = first.get(CHUNKS) if isinstance(first, dict) else None
    return found if isinstance(found, int) and found > 0 else 1


def joined(chunks: list[Any]) -> dict[str, Any] | None:
    """The whole report again; None when it does not add up (a chunk missing or of
    another write). One chunk without a stamp is a report of an older release."""
    if not chunks or not all(isinstance(c, dict) for c in chunks):
        return None
    if len(chunks) != count(chunks[0]) or len({c.get(STAMP) for c in chunks}) != 1:
        return None
    report: dict[str, Any] = {}
    standing: dict[str, Any] = {}
    for chunk in chunks:
        for key, value in chunk.items():
            if key == STANDING_BY and isinstance(value, dict):
                standing.update(value)
            elif key not in (CHUNKS, STAMP):
                report[key] = value
    if STANDING_BY in chunks[0] or standing:
        report[STANDING_BY] = standing
    return report


def chunk_name(node_name: str, index: int) -> str:
    """The znode name of chunk ``index`` of the report at ``node_name`` (quoted)."""
    return node_name if index == 0 else f"{node_name}@{index}"
