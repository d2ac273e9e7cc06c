"""What a task is, as one frozen value: :class:`TaskSpec` (the route, the shard, who
writes and under which epoch), and what follows from it, computed once: the sink
commands (:class:`SinkCommands`). Pure: no I/O.

The node builds a spec per task; everything else (the loops, the sinks, the writer,
the overflow policy, dead letters) is wired from it (``wiring``), instead of a dozen
constructor arguments handed down.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from redis_forwarder.forwarding.streams import EntryCommands
from redis_forwarder.model import TaskKey
from redis_forwarder.routes import RouteConfig
from redis_forwarder.sink.commands import (
    EntryCommand,
    Owner,
    SinkCommand,
    SinkKind,
    SinkShape,
    entry_command,
    sink_command,
)
from redis_forwarder.templates import compile_template

Render = Callable[[bytes, bytes], bytes]  # (channel, pattern) -> a key or channel name


def copies_stream_ids(route: RouteConfig, source_is_cluster: bool = False) -> bool:
    """Whether a stream route may keep entry ids in its sink, which makes a replay a
    no-op: only when each source stream has a sink stream of its own. The name must hold
    {channel}; and {shard} too when another deployment's shards could each have a stream
    of that name (Sentinel masters, read into one target). On a cluster a key lives in
    one slot, so {channel} alone is unique, and it stays so when the slot migrates (a
    {shard} would send the copies to a new sink stream after the move)."""
    template = route.to.stream or ""
    if route.to.origin:
        # A bridge writes streams that have producers of their own on the other side
        # (and the other direction's copies): a copied id would meet theirs, and a
        # refused one settle as a "replay" of another entry (lost). Its entries carry
        # fwd-origin-id instead (at least once: a takeover may write one twice).
        return False
    same_shard = route.to.target == route.from_.deployment  # the shard's own master
    return (
        bool(route.from_.streams)
        and "{channel}" in template
        and (same_shard or source_is_cluster or "{shard}" in template)
    )


@dataclass(frozen=True)
class SinkCommands:
    """How one task writes, encoded once: the target's name, the pub/sub command, the
    stream entry commands, and the dead-letter stream's (when the route has one)."""

    target: Render
    replies_each: int
    pubsub: SinkCommand
    entries: EntryCommands
    dead_target: Render | None
    dead_pubsub: SinkCommand | None
    dead_entry: EntryCommand | None


@dataclass(frozen=True)
class TaskSpec:
    """One route on one shard, as a node runs it. ``consumer``: the node's name in
    stream groups; ``epoch``: the ownership epoch (ZooKeeper czxid; 0 alone), stamped
    on stream entries with the node's name when the route asks for it."""

    route: RouteConfig
    shard: str
    consumer: str = "redis-forwarder"
    epoch: int = 0
    source_is_cluster: bool = False
    # The route has a standby in this fleet: the owner leaves watermarks (issue 15).
    watermarks: bool = False

    @property
    def key(self) -> TaskKey:
        return (self.route.name, self.shard)

    @property
    def name(self) -> str:
        return f"{self.route.name}@{self.shard}"

    @property
    def reads_streams(self) -> bool:
        return bool(self.route.from_.streams)

    @functools.cached_property
    def commands(self) -> SinkCommands:
        route, shard = self.route, self.shard
        owner = Owner(self.consumer, self.epoch) if route.to.node_fields else None
        field = None if route.to.entry == "json" else route.to.field.encode()
        shape = SinkShape(
            route.to.kind, route.to.maxlen, route.to.sharded, owner=owner, entry_field=field
        )
        fixed = {"route": route.name, "shard": shard, "origin": route.origin_names[0]}
        target = compile_template(route.to.name_template).bind(**fixed)
        copy = copies_stream_ids(route, self.source_is_cluster)
        entries = EntryCommands(
            write=entry_command(shape, target, copy),
            late=entry_command(shape, target, copy_ids=False),
            key_of=lambda stream: target(stream, b""),
        )
        dead = compile_template(route.dead_letter).bind(**fixed) if route.dead_letter else None
        dead_shape = SinkShape(SinkKind.STREAM, owner=owner)
        return SinkCommands(
            target=target,
            replies_each=shape.replies_per_message,
            pubsub=sink_command(shape, target, shard),
            entries=entries,
            dead_target=dead,
            dead_pubsub=sink_command(dead_shape, dead, shard) if dead else None,
            dead_entry=entry_command(dead_shape, dead, copy_ids=False) if dead else None,
        )
