"""Reading back what the forwarders wrote for a drill run, and what the source itself
kept. The drill routes (in the lab spec, see docs/drills.md):

- ``drill``: pattern ``drill.*`` -> stream ``drill:{shard}:{channel}``, with node and
  epoch; the entry id is when the sink wrote it;
- ``drill-streams``: stream ``drill-stream`` (group ``drill``) -> stream
  ``drill-copy:{shard}:{channel}`` with copied ids, node and epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from redis_forwarder.drill.checker import Received, Sent
from redis_forwarder.drill.load import CHANNELS, PUBSUB_PREFIX, STREAM

PAGE = 10_000


def entries(client: redis.Redis, key: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    start = "-"
    while True:
        page: Any = client.xrange(key, min=start, max="+", count=PAGE)
        if not page:
            return
        yield from page
        ms, seq = page[-1][0].decode().split("-")
        start = f"{ms}-{int(seq) + 1}"


def received(run: str, shard: str, client: redis.Redis) -> list[Received]:
    """Every copy of this run's messages that the shard's sinks hold."""
    found: list[Received] = []
    prefix = f"{run} ".encode()
    for index in range(CHANNELS):
        channel = f"{PUBSUB_PREFIX}{index}"
        for entry_id, fields in entries(client, f"drill:{shard}:{channel}"):
            payload = fields.get(b"payload", b"")
            if not payload.startswith(prefix):
                continue
            seq = int(payload.split(b" ", 2)[1])
            found.append(
                Received(
                    f"pubsub@{shard}",
                    f"{shard}:{channel}",
                    seq,
                    int(entry_id.split(b"-")[0]) / 1000,
                    fields.get(b"node", b"").decode(),
                    int(fields.get(b"epoch", b"0")),
                    shard,
                )
            )
    for _entry_id, fields in entries(client, f"drill-copy:{shard}:{STREAM}"):
        if fields.get(b"run") != run.encode():
            continue
        found.append(
            Received(
                f"stream@{shard}",
                f"{shard}:{STREAM}",
                int(fields[b"seq"]),
                None,
                fields.get(b"node", b"").decode(),
                int(fields.get(b"epoch", b"0")),
                shard,
            )
        )
    return found


def kept_by_source(run: str, shard: str, client: redis.Redis) -> set[int]:
    """This run's entries that the source stream still holds: an entry acknowledged by a
    master that died before its replica had it is Redis replication's loss, not the
    forwarder's, and is reported apart."""
    return {
        int(fields[b"seq"])
        for _id, fields in entries(client, STREAM)
        if fields.get(b"run") == run.encode()
    }


def split_replication_loss(sent: list[Sent], kept: dict[str, set[int]]) -> tuple[list[Sent], int]:
    """Stream messages the source no longer has leave the checker's input."""
    kept_sent: list[Sent] = []
    dropped = 0
    for message in sent:
        if message.route.startswith("stream@"):
            shard = message.channel.split(":", 1)[0]
            if message.seq not in kept.get(shard, set()):
                dropped += 1
                continue
        kept_sent.append(message)
    return kept_sent, dropped
