"""Reading back what the forwarders wrote for a drill run, and what the source itself
kept. Each lane's copies are in its sink stream (``Lane.sink_key``), written by the
drill routes with node and epoch fields (docs/drills.md):

- pub/sub lanes: the payload ``"<run> <seq> <µs>"``; the entry id is when the sink
  wrote it;
- stream lanes: copied ids, so the write time is unknown; ``run`` and ``seq`` fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import redis

from redis_forwarder.drill.checker import Received, Sent
from redis_forwarder.drill.workload import Lane

PAGE = 10_000
ClientFor = Callable[[Lane], redis.Redis]


def entries(client: redis.Redis, key: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    start = "-"
    while True:
        page: Any = client.xrange(key, min=start, max="+", count=PAGE)
        if not page:
            return
        yield from page
        ms, seq = page[-1][0].decode().split("-")
        start = f"{ms}-{int(seq) + 1}"


def received(run: str, lanes: tuple[Lane, ...], sink_for: ClientFor) -> list[Received]:
    """Every copy of this run's messages that the lanes' sinks hold."""
    found: list[Received] = []
    prefix = f"{run} ".encode()
    for lane in lanes:
        client = sink_for(lane)
        for entry_id, fields in entries(client, lane.sink_key):
            if lane.stream:
                if fields.get(b"run") != run.encode():
                    continue
                seq, at = int(fields[b"seq"]), None
            else:
                payload = fields.get(b"payload", b"")
                if not payload.startswith(prefix):
                    continue
                seq = int(payload.split(b" ", 2)[1])
                at = int(entry_id.split(b"-")[0]) / 1000
            found.append(
                Received(
                    lane.route,
                    lane.label,
                    seq,
                    at,
                    fields.get(b"node", b"").decode(),
                    int(fields.get(b"epoch", b"0")),
                    fields.get(b"shard", b"").decode(),
                )
            )
    return found


def kept_by_source(run: str, lanes: tuple[Lane, ...], source_for: ClientFor) -> dict[str, set[int]]:
    """Per stream lane, this run's entries that the source stream still holds: an entry
    acknowledged by a master that died before its replica had it is Redis replication's
    loss, not the forwarder's, and is reported apart."""
    return {
        lane.label: {
            int(fields[b"seq"])
            for _id, fields in entries(source_for(lane), lane.key)
            if fields.get(b"run") == run.encode()
        }
        for lane in lanes
        if lane.stream
    }


def split_replication_loss(sent: list[Sent], kept: dict[str, set[int]]) -> tuple[list[Sent], int]:
    """Stream messages the source no longer has leave the checker's input."""
    kept_sent: list[Sent] = []
    dropped = 0
    for message in sent:
        if message.channel in kept and message.seq not in kept[message.channel]:
            dropped += 1
            continue
        kept_sent.append(message)
    return kept_sent, dropped


def pending(lanes: tuple[Lane, ...], group: str, source_for: ClientFor) -> dict[str, int]:
    """Per stream lane, entries its consumer group read and never acknowledged: a task
    that read after its stop (issue 9: a task dropped with a lost session kept reading
    for 5 s) leaves them there, claimed by nobody who will ever write them."""
    found: dict[str, int] = {}
    for lane in lanes:
        if lane.stream:
            summary: Any = source_for(lane).xpending(lane.key, group)
            found[lane.label] = int(summary["pending"])
    return found
