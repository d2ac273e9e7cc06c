"""One attempt of a task, wired from its spec: which source connection, which sink
(one node or a cluster's masters), which writer and overflow policy, where oversized
messages and refused entries go. The connections are opened through the task's
:class:`TaskConnections` and closed by the attempt's exit stack; how they close (flush
first, or reset) is asked when they close, since a stop can come at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from redis_forwarder.forwarding.aside import Oversize, StreamDeadLetter, StreamOversize
from redis_forwarder.forwarding.connections import CONNECT_TIMEOUT, TaskConnections
from redis_forwarder.forwarding.echoes import echo_sides
from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.origins import Origins
from redis_forwarder.forwarding.placement import Endpoint, Placement
from redis_forwarder.forwarding.pubsub import LoopGuard, PubSubLoop
from redis_forwarder.forwarding.sink_failover import AckedTail, Keyed
from redis_forwarder.forwarding.sink_watch import SAMPLED, SinkWatch
from redis_forwarder.forwarding.spec import TaskSpec
from redis_forwarder.forwarding.streams import StreamLoop
from redis_forwarder.model import Address
from redis_forwarder.resp import ConnectionLost, RespConnection
from redis_forwarder.route_loops import loop_check
from redis_forwarder.settings import Credentials
from redis_forwarder.sink.commands import SinkKind
from redis_forwarder.sink.overflow import DropOldestBuffer
from redis_forwarder.sink.pubsub import ClusterPubSubSink, NodePubSubSink, PubSubSink
from redis_forwarder.sink.streams import ClusterStreamSink, NodeStreamSink, StreamSink
from redis_forwarder.sink.writer import PipelineWriter
from redis_forwarder.source.pubsub import PubSubReader
from redis_forwarder.source.streams import StreamReader
from redis_forwarder.standby.marks import Marks, Watermark, mark_key
from redis_forwarder.standby.ring import OWN_RING, Ring
from redis_forwarder.templates import compile_template
from redis_forwarder.topology.slots import key_slot
from redis_forwarder.validation import Located
from redis_forwarder.work import slot_groups

log = logging.getLogger(__name__)
STREAM_BATCH = 500
# Messages per batch of a takeover's replay: no more than a stream sink's watch keeps
# the ids of per batch, so that every replayed message is looked for if the sink fails
# over. A replay lands just as a fault ends, when a sink failover is likeliest: 602
# replayed into a master demoted a moment later, in one batch of 1,000, were counted as
# 100 lost (a chaos campaign).
REPLAY_BATCH = SAMPLED
CLUSTER_SINK = "the target cluster's masters"


@dataclass
class Attempt:
    """What one attempt runs: its loops (one for pub/sub; one per slot group of streams:
    on a cluster XREADGROUP cannot cross slots), where it reads and where it writes."""

    loops: list[PubSubLoop] | list[StreamLoop]
    source: Address
    sink: str
    subscribed_sharded: list[str]


class Wiring:
    """Builds attempts for one task. ``graceful()`` says, when a connection closes,
    whether to flush it first (a hand-off) or reset it (ownership lost, a re-home, a
    failure: buffered writes must not reach the sink after the fact)."""

    def __init__(
        self,
        spec: TaskSpec,
        placement: Placement,
        connections: TaskConnections,
        metrics: TaskMetrics,
        graceful: Callable[[], bool],
        ring: Ring | None = None,
    ) -> None:
        self.spec = spec
        self.route = spec.route
        self.placement = placement
        self.connections = connections
        self.metrics = metrics
        self.graceful = graceful
        self.guard = _loop_guard(spec)
        self.loops = _loop_at_start(spec)  # why the task would feed itself, or ""
        # The ids a stream sink returned, looked for when it fails over (issue 14). Not
        # for a cluster sink: its ``where`` never changes, so they would never be.
        streams_sink = spec.route.to.kind is SinkKind.STREAM and placement.cluster_sink is None
        self.tail = AckedTail(spec.commands.entries.key_of) if streams_sink else None
        # Issue 15: an owner of a route with standbys leaves watermarks; a standby keeps
        # a ring, and at its takeover (``replay_due``) writes it from the watermark on.
        self.mark_key = mark_key(spec.route.name, spec.shard)
        self.marks = Marks(self.mark_key) if spec.watermarks else None
        self.ring = ring
        self.replay_due = False
        self.own_ring = False  # a yielding owner took its task back: no watermark to find
        # Issue 20: a pub/sub bridge's echoes, dropped where heard (standby or owner).
        self.echoes = echo_sides(placement.echoes, spec.route.origin_names, spec.commands.target)
        self._stack: contextlib.AsyncExitStack | None = None  # the pub/sub attempt's

    async def attempt(self, source: Endpoint, stack: contextlib.AsyncExitStack) -> Attempt:
        """Connect to ``source`` (and the sink the placement names) and build the loops;
        everything opened is closed by ``stack``."""
        if self.loops:
            raise ConnectionLost(self.spec.name, self.loops)
        if self.guard is not None and self.guard.tripped:
            raise ConnectionLost(self.spec.name, self.guard.tripped)  # it would loop again
        if self.spec.reads_streams:
            return await self._streams(source.address, source.credentials, stack)
        return await self._pubsub(source.address, source.credentials, stack)

    # -- connections
    async def _open(
        self,
        stack: contextlib.AsyncExitStack,
        address: Address,
        credentials: Credentials,
        timeout: float,
    ) -> RespConnection:
        connection = await self.connections.open(address, credentials, timeout)
        stack.push_async_callback(self._close, connection)
        return connection

    async def _close(self, connection: RespConnection) -> None:
        await self.connections.close(connection, abort=not self.graceful())

    def _source_timeout(self) -> float:
        # A blocked XREADGROUP answers after the heartbeat: wait that long and more.
        return CONNECT_TIMEOUT + self.route.heartbeat

    # -- pub/sub
    async def _pubsub(
        self, address: Address, credentials: Credentials, stack: contextlib.AsyncExitStack
    ) -> Attempt:
        source = await self._open(stack, address, credentials, self._source_timeout())
        self._stack = stack
        listening = self.ring is not None and not self.replay_due
        sink: PubSubSink | None = None
        if listening:  # a standby: no sink; a lost subscription is a hole in the ring
            where = "its ring (standby)"
            stack.callback(self._hole)
        else:
            sink, where = await self._pubsub_sink(stack)
        reader = PubSubReader(source)
        route = self.route
        sharded = self._keys_served() if route.from_.sharded else []
        await reader.subscribe(
            [c.encode() for c in route.from_.channels],
            [p.encode() for p in route.from_.patterns],
            [c.encode() for c in sharded],
        )
        oversize = None if sink is None else self._oversize(sink)
        loop = PubSubLoop(
            reader, sink, self.metrics, route.heartbeat, oversize, self.guard, self.marks,
            self.ring if listening else None, self.echoes,
        )  # fmt: skip
        if self.replay_due:  # promoted while its subscription was down: replay first
            loop.take_over = self.take_over
        return Attempt([loop], address, where, list(sharded))

    def _hole(self) -> None:
        if self.ring is not None:
            self.ring.lost_subscription(time.time())

    # -- the takeover (issue 15)
    def promote(self, spec: TaskSpec, own_ring: bool = False) -> None:
        """The standby owns the task now (ZooKeeper says so: the old owner's ownership
        is gone): write under the new epoch, and replay at the loop's next turn.
        ``own_ring``: an owner that yielded takes its task back; its ring holds only
        what it heard since it resubscribed, all of it unwritten."""
        self.spec = spec
        self.marks = Marks(self.mark_key) if spec.watermarks else None
        self.replay_due = self.ring is not None
        self.own_ring = own_ring

    def demote(self, ring: Ring) -> None:
        """An owner yields to its standby (``forwarding.yielding``): its next attempts
        listen into ``ring`` and write nothing, so its last watermark stays where its
        writing stopped."""
        self.ring, self.replay_due, self.own_ring = ring, False, False
        self.metrics.ring.track(ring, time.time)

    async def take_over(self, loop: PubSubLoop) -> None:
        """Run by the loop (``PubSubLoop.take_over``): give it a sink, find the old
        owner's watermark in the ring, write what follows it, in order; the loop then
        goes on with the same subscription, live. A failure here leaves the ring and
        ``replay_due`` as they were: the next attempt replays again, from the newest
        watermark, ours by then if we wrote part of it."""
        ring, stack = self.ring, self._stack
        if ring is None or stack is None:
            return
        if loop.sink is None:
            loop.sink, _where = await self._pubsub_sink(stack)
            loop.oversize = self._oversize(loop.sink)
        loop.marks = self.marks
        if self.own_ring:
            replay = replace(ring.replay(None, time.time()), found=OWN_RING)
        else:
            replay = ring.replay(await self._read_mark(), time.time())
        self.metrics.ring.took_over(self.spec.name, replay)
        loop.ring = None
        if self.echoes is not None:
            # The old owner may have written these too (after its last watermark): then
            # two copies come back, and the second must not go home (a kill test: the
            # other side's messages went back to it).
            forgotten = self.echoes.left(replay.messages[: replay.maybe_written])
            if forgotten:  # older copies, forgotten on the way: counted as anywhere
                self.metrics.echoes_unheard(forgotten)
        for start in range(0, len(replay.messages), REPLAY_BATCH):
            # What the ring kept was recorded as sent when heard (the standby did what
            # the owner did); an echo heard before its original is dropped now.
            await loop.forward(replay.messages[start : start + REPLAY_BATCH], replay=True)
            # Written with our watermark: a retry replays from it, not the whole ring.
            self.own_ring = False
        self.ring, self.replay_due, self.own_ring = None, False, False
        self.metrics.ring.track(None, time.time)

    async def _read_mark(self) -> Watermark | None:
        """The old owner's watermark, from the server that holds its key (a connection
        of its own: the writers' replies are not matched to commands)."""
        cluster = self.placement.cluster_sink
        if cluster is not None:
            shard = cluster.topology().shard_for_slot(key_slot(self.mark_key))
            if shard is None:
                raise ConnectionLost(CLUSTER_SINK, "the watermark's slot has no master")
            address, credentials = shard.master.address, cluster.credentials
        else:
            end = self.placement.locate_sink(frozenset())
            address, credentials = end.address, end.credentials
        connection = await self.connections.open(address, credentials, self.route.sink_timeout)
        try:
            data = await connection.call(b"GET", self.mark_key)
        finally:
            await self.connections.close(connection, abort=False)
        if not isinstance(data, bytes):
            return None
        try:
            return Watermark.decode(data)
        except ValueError as exc:
            log.error(
                "%s: unreadable watermark %r (%s): replaying the whole ring",
                self.spec.name,
                data[:80],
                exc,
            )
            return None

    async def _pubsub_sink(self, stack: contextlib.AsyncExitStack) -> tuple[PubSubSink, str]:
        """One node, or every master of a cluster target (the watermark's master too)."""
        route, commands, gate = self.route, self.spec.commands, self.placement.gate
        cluster = self.placement.cluster_sink
        sink: PubSubSink
        if cluster is not None:
            sink = ClusterPubSubSink(
                commands.pubsub, commands.target, cluster.topology,
                self.connections.connector(cluster.credentials), self.metrics,
                route.max_in_flight, route.sink_timeout, cluster.on_moved,
                commands.replies_each, gate, self._watch(),
            )  # fmt: skip
            if self.marks is not None:
                sink.mark_key = self.mark_key
            where = CLUSTER_SINK
        else:
            end = self.placement.locate_sink(frozenset())
            connection = await self.connections.open(
                end.address, end.credentials, route.sink_timeout
            )
            where = str(end.address)
            if self.tail is not None:  # before the writer reads this connection's replies
                try:
                    await self._look_for_tail(connection, where)
                except BaseException:
                    await self.connections.close(connection, abort=True)
                    raise
            writer = PipelineWriter(connection, self.metrics, route.max_in_flight, gate)
            writer.start()
            watch = self._watch()
            overflow = None
            if route.overflow == "drop-oldest":
                overflow = DropOldestBuffer(
                    writer, route.buffer, self.metrics, commands.replies_each, watch
                )
            sink = NodePubSubSink(writer, commands.pubsub, overflow, commands.replies_each, watch)
        self.metrics.track_in_flight(sink.in_flight)
        stack.push_async_callback(self._close_pubsub_sink, sink)
        return sink, where

    async def _close_pubsub_sink(self, sink: PubSubSink) -> None:
        graceful = self.graceful()
        if graceful:  # a hand-off: what is in flight gets its answers first
            with contextlib.suppress(ConnectionLost, TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await sink.flush()
        self.metrics.track_in_flight(None)
        with contextlib.suppress(ConnectionLost):
            await sink.close(abort=not graceful)

    async def _look_for_tail(self, connection: RespConnection, where: str) -> None:
        async def lookup(commands: list[Keyed]) -> list[object]:
            buffer = b"".join([command for _key, command in commands])
            return await connection.call_many(buffer, len(commands))

        if self.tail is not None:
            self._sink_moved(*await self.tail.missing_on(lookup, where), where)

    def _watch(self) -> SinkWatch | None:
        """What a node sink's replies are read for: WAIT, and the stream ids returned."""
        route, tail = self.route, self.tail
        if route.to.wait is None and tail is None:
            return None
        target = self.spec.commands.target
        constant = _constant_key(self.spec)
        return SinkWatch(
            self.metrics, self.spec.commands.replies_each, route.to.wait, tail,
            None if constant is not None else target, constant,
        )  # fmt: skip

    def _oversize(self, sink: PubSubSink) -> Oversize | None:
        route, commands = self.route, self.spec.commands
        if route.max_message_bytes is None:
            return None
        dead = None
        if route.oversize == "dead-letter" and commands.dead_pubsub and commands.dead_target:
            dead = sink.sibling(commands.dead_pubsub, commands.dead_target)
        return Oversize(route.max_message_bytes, self.metrics, dead)

    # -- streams
    async def _streams(
        self, address: Address, credentials: Credentials, stack: contextlib.AsyncExitStack
    ) -> Attempt:
        """A loop per group of streams that one XREADGROUP may read together (on a
        cluster, one slot's streams), each with its own connections: a blocking read
        holds its connection."""
        groups = slot_groups(self._keys_served(), self.spec.source_is_cluster)
        if not groups:
            raise ConnectionLost(str(address), "the shard serves none of the streams")
        group = (self.route.from_.group or "").encode()
        loops: list[StreamLoop] = []
        where = ""
        for streams in groups:
            source = await self._open(stack, address, credentials, self._source_timeout())
            sink, where = await self._stream_sink(stack)
            if self.tail is not None and not loops:
                self._sink_moved(*await self.tail.missing_on(sink.write, where), where)
            reader = StreamReader(
                source, [s.encode() for s in streams], group, self.spec.consumer.encode()
            )
            loops.append(self._stream_loop(reader, sink))
        return Attempt(loops, address, where, [])

    def _sink_moved(self, missing: int, asked: int, old: str, new: str) -> None:
        if asked:
            self.metrics.lost_to_sink_failover(missing, asked, old, new)

    async def _stream_sink(self, stack: contextlib.AsyncExitStack) -> tuple[StreamSink, str]:
        route, commands = self.route, self.spec.commands
        cluster = self.placement.cluster_sink
        sink: StreamSink
        if cluster is not None:
            connect = self.connections.connector(cluster.credentials)
            sink = ClusterStreamSink(
                cluster.topology, connect, commands.replies_each, route.sink_timeout,
                route.to.wait,
            )  # fmt: skip
            stack.push_async_callback(self._close_stream_sink, sink)
            return sink, CLUSTER_SINK
        end = self.placement.locate_sink(frozenset())
        connection = await self._open(stack, end.address, end.credentials, route.sink_timeout)
        return NodeStreamSink(connection, commands.replies_each, route.to.wait), str(end.address)

    async def _close_stream_sink(self, sink: StreamSink) -> None:
        await sink.close(abort=not self.graceful())

    def _stream_loop(self, reader: StreamReader, sink: StreamSink) -> StreamLoop:
        route, commands = self.route, self.spec.commands
        dead = None
        if commands.dead_entry is not None and commands.dead_target is not None:
            dead_target = commands.dead_target
            dead = StreamDeadLetter(
                sink.with_replies(1), commands.dead_entry, lambda s: dead_target(s, b"")
            )
        oversize = None
        if route.max_message_bytes is not None:
            use = dead if route.oversize == "dead-letter" else None
            oversize = StreamOversize(route.max_message_bytes, self.metrics, use)
        here, there = route.origin_names
        origins = Origins(
            here.encode(), there.encode(), route.to.max_hops
        ) if route.to.origin else None  # fmt: skip
        return StreamLoop(
            reader, sink, commands.entries, self.metrics, STREAM_BATCH, route.heartbeat,
            self.placement.gate, oversize, dead, self.tail, origins,
        )  # fmt: skip

    def _keys_served(self) -> list[str]:
        if self.placement.keys_served is not None:
            return self.placement.keys_served()
        return list(self.route.from_.sharded or self.route.from_.streams)


def _constant_key(spec: TaskSpec) -> bytes | None:
    """The sink key when every message goes to one (no {channel} nor {pattern})."""
    if compile_template(spec.route.to.name_template).fields <= {"route", "shard", "origin"}:
        return spec.commands.target(b"", b"")
    return None


def _loop_guard(spec: TaskSpec) -> LoopGuard | None:
    """A guard for a pub/sub route that publishes on the deployment it reads (the
    config refused those it could prove loop; the rest are watched)."""
    route = spec.route
    if route.from_.streams or not route.writes_to_source or route.to.kind is not SinkKind.CHANNEL:
        return None
    if route.to.sharded != bool(route.from_.sharded):
        return None  # PUBLISH never reaches SSUBSCRIBE, nor SPUBLISH SUBSCRIBE
    return LoopGuard(route.name, route.to.name_template, spec.commands.target)


def _loop_at_start(spec: TaskSpec) -> str:
    """The config's loop check again, now that the task's shard is known (a {shard}
    could not be decided at load on a cluster or standalone source): a task proven to
    feed itself never connects. Logged once, here; each refused attempt is its gap."""
    route = spec.route
    if not route.writes_to_source or "{shard}" not in route.to.name_template:
        return ""  # nothing the load check did not know
    try:
        loop_check(route, shards=[spec.shard])
    except Located as exc:
        log.error("%s: %s; not started", spec.name, exc)
        return f"not started: {exc}"
    return ""
