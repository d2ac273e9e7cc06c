"""One task (a route on a shard), kept forwarding through failures: pub/sub or streams.

Contract: ``run`` never returns until cancelled. Each loss of the source or the sink
connection opens a *gap* (start, reason), asks topology for a refresh, and reconnects
with backoff (50 ms doubling to 2 s, jittered) to wherever the shard's master and the
sink's master are *now*; the gap closes when forwarding resumes. ``rehome`` ends the
current connections at once (the watcher saw the master move). Pub/sub keeps nothing,
so messages published inside a gap are lost: that is what gaps measure. Stream tasks
lose nothing in a gap: unacknowledged entries are claimed again when they reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from redis_forwarder.config import RouteConfig
from redis_forwarder.forward import (
    Oversize,
    PubSubForwarding,
    StreamDeadLetter,
    StreamForwarding,
    StreamOversize,
)
from redis_forwarder.gate import Gate
from redis_forwarder.model import Address, Topology
from redis_forwarder.observe import Metrics
from redis_forwarder.resp import ConnectionLost, RespConnection
from redis_forwarder.retry import Backoff
from redis_forwarder.settings import Credentials
from redis_forwarder.sink.batch import BatchSink, ClusterSink, SingleNodeSink
from redis_forwarder.sink.commands import Owner, SinkKind, SinkShape, entry_command, sink_command
from redis_forwarder.sink.entries import ClusterEntrySink, EntrySink, NodeEntrySink
from redis_forwarder.sink.overflow import DropOldestBuffer
from redis_forwarder.sink.writer import PipelineWriter
from redis_forwarder.source.pubsub import PubSubReader
from redis_forwarder.source.streams import StreamReader
from redis_forwarder.templates import compile_template
from redis_forwarder.work import slot_groups

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 2.0
STREAM_BATCH = 500


def copies_stream_ids(route: RouteConfig, source_is_cluster: bool = False) -> bool:
    """Whether a stream route may keep entry ids in its sink, which makes a replay a
    no-op: only when each source stream has a sink stream of its own. The name must hold
    {channel}; and {shard} too when another deployment's shards could each have a stream
    of that name (Sentinel masters, read into one target). On a cluster a key lives in
    one slot, so {channel} alone is unique, and it stays so when the slot migrates (a
    {shard} would send the copies to a new sink stream after the move)."""
    template = route.to.stream or ""
    return (
        bool(route.from_.streams)
        and "{channel}" in template
        and (route.to.target == "source" or source_is_cluster or "{shard}" in template)
    )


async def first_failure(loops: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``loops`` together until one ends; cancel the others and raise what ended it."""
    running = [asyncio.ensure_future(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            finished.result()  # raises the loop's error
    finally:
        for loop in running:
            loop.cancel()
        await asyncio.gather(*running, return_exceptions=True)


@dataclass
class Gap:
    start: float
    reason: str
    end: float | None = None


ClusterTarget = tuple[Callable[[], Topology], Credentials, Callable[[str], None]]


@dataclass(frozen=True)
class Endpoint:
    """Where to connect now, and as whom."""

    address: Address
    credentials: Credentials


REFUSAL_LOG_EVERY = 10.0  # seconds between two "the sink refused" lines of a task


class ForwardingTask:
    def __init__(
        self,
        route: RouteConfig,
        shard: str,
        locate_source: Callable[[int], Endpoint],
        locate_sink: Callable[[int], Endpoint],
        on_lost: Callable[[str], None],
        metrics: Metrics,
        consumer: str = "redis-forwarder",
        cluster_sink: ClusterTarget | None = None,
        keys_served: Callable[[], list[str]] | None = None,
        source_is_cluster: bool = False,
        owner: Owner | None = None,
        gate: Gate | None = None,
    ) -> None:
        """``cluster_sink``: the target is a cluster (its topology now, credentials, and
        whom to tell about MOVED). ``keys_served``: the sharded channels or streams of
        the route that this shard serves now (default: all of them). ``owner``: the
        node and epoch that stream sinks stamp on entries, if the route asks for it.
        ``gate``: no sink write starts while it is closed (a suspended ZooKeeper
        session)."""
        self.route = route
        self.shard = shard
        self.locate_source = locate_source
        self.locate_sink = locate_sink
        self.on_lost = on_lost
        self.metrics = metrics
        self.consumer = consumer  # the consumer name in stream groups
        self.cluster_sink = cluster_sink
        every_key = list(route.from_.sharded or route.from_.streams)
        self.keys_served = keys_served or (lambda: every_key)
        self.source_is_cluster = source_is_cluster
        self.epoch = owner.epoch if owner is not None else 0
        self.gate = gate
        self._graceful = False  # stopping: flush what is in flight before closing
        self.subscribed_sharded: list[str] = []  # what the current connection serves
        self.gaps: list[Gap] = []
        self.source_address: Address | None = None  # where it reads now
        self._attempt = 0  # consecutive failed attempts: a locator may move on
        self.running = False
        self.received = 0
        self.forwarded = 0  # answered by the sink
        self.lag = 0.0  # seconds: the last batch's latency (see Metrics.latency)
        self.dropped = 0
        self._current: asyncio.Task[None] | None = None
        self._rehome_reason = ""
        self._retry_now = asyncio.Event()
        self._target = compile_template(route.to.name_template).bind(route=route.name, shard=shard)
        self._shape = SinkShape(
            route.to.kind,
            route.to.maxlen,
            sharded=route.to.sharded,
            owner=owner if route.to.node_fields else None,
        )
        self._command = sink_command(self._shape, self._target, shard)
        self._entry_command = entry_command(
            self._shape, self._target, copies_stream_ids(route, source_is_cluster)
        )
        self._late_command = entry_command(self._shape, self._target, copy_ids=False)
        # Dead letters: a stream on the route's target, one entry per refused message.
        dead = route.dead_letter
        self._dead_target = (
            compile_template(dead).bind(route=route.name, shard=shard) if dead else None
        )
        self.oversized = 0
        self.given_up = 0  # stream entries the sink refused for good
        self.refused_lost = 0  # pub/sub messages the sink refused
        self._refusal_logged_at = float("-inf")
        self._oversize_logged_at = float("-inf")
        self._refusal_logged_count = 0
        self.pubsub: PubSubForwarding | None = None
        self.streams: list[StreamForwarding] = []
        self._labels = {"route": route.name, "shard": shard}

    @property
    def name(self) -> str:
        return f"{self.route.name}@{self.shard}"

    @property
    def last_message_at(self) -> float:
        if self.pubsub is not None:
            return self.pubsub.stats.last_message_at
        return max((loop.last_message_at for loop in self.streams), default=0.0)

    @property
    def progress_at(self) -> float:
        """When the task's loop last turned (monotonic): reading or writing returns
        within a heartbeat, a sink timeout or a connect timeout, so a loop that stops
        turning for longer is wedged."""
        loops = [self.pubsub] if self.pubsub is not None else self.streams
        return min((loop.beat_at for loop in loops), default=time.monotonic())

    def wedged_after(self) -> float:
        return 3 * self.route.heartbeat + self.route.sink_timeout + 2 * CONNECT_TIMEOUT + 1

    def stop(self, graceful: bool) -> None:
        """Say how the coming cancellation should end: ``graceful`` flushes what was
        read before closing (a hand-off); otherwise close at once (ownership is gone)."""
        self._graceful = graceful

    def rehome(self, reason: str) -> None:
        """Drop the current connections and reconnect where the masters are now; if the
        task is waiting to retry, retry at once."""
        if self._current is not None and not self._current.done():
            self._rehome_reason = reason
            self._current.cancel()
        self._retry_now.set()

    async def run(self) -> None:
        backoff = Backoff(initial=0.05, cap=2.0)
        while True:
            self._current = asyncio.ensure_future(self._forward_once())
            try:
                await self._current
                reason = "stopped"
            except ConnectionLost as exc:
                reason = exc.reason if exc.address in exc.reason else f"{exc.address}: {exc.reason}"
            except asyncio.CancelledError:
                if not self._rehome_reason:
                    raise  # the task itself was cancelled: stop
                reason, self._rehome_reason = self._rehome_reason, ""
                backoff.reset()
                self._attempt = -1  # the topology moved: start again at its first choice
            except Exception as exc:
                # Not a lost connection: garbage on the wire, a bug. Say so loudly, count it
                # as a gap, and start over with fresh connections.
                log.exception("%s failed unexpectedly; reconnecting", self.name)
                reason = f"unexpected {type(exc).__name__}: {exc}"
            # A failed server is not asked first again: a locator with alternatives moves
            # on (a frozen node would cost a connect timeout more on every retry).
            self._attempt += 1
            self._open_gap(reason)
            self.on_lost(f"{self.name}: {reason}")
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay()):
                    await self._retry_now.wait()

    async def _forward_once(self) -> None:
        source_end = self.locate_source(self._attempt)
        self.source_address = source_end.address
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.route.from_.streams:
                    loop, where = await self._stream_loops(source_end, stack)
                else:
                    loop, where = await self._pubsub_loop(source_end, stack)
                self._close_gap()
                self.running = True
                self.metrics.running.labels(**self._labels).set(1)
                self.metrics.epoch.labels(**self._labels).set(self.epoch)
                log.info("%s forwarding from %s to %s", self.name, source_end.address, where)
                await loop
        finally:
            self.running = False
            self.metrics.running.labels(**self._labels).set(0)

    async def _connect(
        self, end: Endpoint, stack: contextlib.AsyncExitStack, timeout: float
    ) -> RespConnection:
        connection = RespConnection(
            end.address.host, end.address.port, timeout=timeout, connect_timeout=CONNECT_TIMEOUT
        )
        stack.push_async_callback(self._close, connection)
        tls = end.credentials.tls.context() if end.credentials.tls else None
        await connection.open(end.credentials.username, end.credentials.password, tls)
        return connection

    async def _close(self, connection: RespConnection) -> None:
        # Only a graceful stop sends what is still buffered; otherwise (ownership lost,
        # a re-home) buffered writes must not reach the sink after the fact.
        await connection.close(abort=not self._graceful)

    async def _close_entries(self, sink: EntrySink) -> None:
        await sink.close(abort=not self._graceful)

    def _source_timeout(self) -> float:
        # A blocked XREADGROUP answers after the heartbeat: wait that long and more.
        return CONNECT_TIMEOUT + self.route.heartbeat

    async def _batch_sink(self, stack: contextlib.AsyncExitStack) -> tuple[BatchSink, str]:
        """The sink of a pub/sub task: one node, or every master of a cluster target."""
        sink: BatchSink
        if self.cluster_sink is not None:
            topology, credentials, on_moved = self.cluster_sink
            sink = ClusterSink(
                self._command,
                self._target,
                topology,
                credentials,
                self.route.max_in_flight,
                self.route.sink_timeout,
                on_moved,
                self._shape.replies_per_message,
                CONNECT_TIMEOUT,
                self.gate,
                self._answered,
            )
            where = "the target cluster's masters"
        else:
            end = self.locate_sink(0)
            connection = await self._connect(end, stack, self.route.sink_timeout)
            writer = PipelineWriter(connection, self.route.max_in_flight, self.gate, self._answered)
            writer.start()
            overflow = None
            if self.route.overflow == "drop-oldest":
                overflow = DropOldestBuffer(
                    writer, self.route.buffer, self._dropped, self._shape.replies_per_message
                )
            sink = SingleNodeSink(writer, self._command, overflow, self._shape.replies_per_message)
            where = str(end.address)

        async def close_sink() -> None:
            if self._graceful:
                with contextlib.suppress(ConnectionLost, TimeoutError):
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await sink.flush()
            # Pub/sub loops count refusals as they come (_on_refused); what came after.
            reported = self.pubsub.refused_reported if self.pubsub is not None else 0
            self.metrics.refused.labels(**self._labels).inc(max(0, sink.refused - reported))
            with contextlib.suppress(ConnectionLost, asyncio.CancelledError):
                await sink.close(abort=not self._graceful)

        stack.push_async_callback(close_sink)
        return sink, where

    async def _pubsub_loop(
        self, source_end: Endpoint, stack: contextlib.AsyncExitStack
    ) -> tuple[Coroutine[Any, Any, None], str]:
        source = await self._connect(source_end, stack, self._source_timeout())
        sink, where = await self._batch_sink(stack)
        reader = PubSubReader(source)
        sharded = self.keys_served() if self.route.from_.sharded else []
        self.subscribed_sharded = list(sharded)
        await reader.subscribe(
            [c.encode() for c in self.route.from_.channels],
            [p.encode() for p in self.route.from_.patterns],
            [c.encode() for c in sharded],
        )
        self.pubsub = PubSubForwarding(
            reader,
            sink,
            self.route.heartbeat,
            on_batch=self._count,
            oversize=self._oversize(sink),
            on_refused=self._on_refused,
        )
        return self.pubsub.run(), where

    async def _stream_loops(
        self, source_end: Endpoint, stack: contextlib.AsyncExitStack
    ) -> tuple[Coroutine[Any, Any, None], str]:
        """A loop per group of streams that one XREADGROUP may read together (on a
        cluster, one slot's streams), each with its own connections: a blocking read
        holds its connection."""
        groups = slot_groups(self.keys_served(), self.source_is_cluster)
        if not groups:
            raise ConnectionLost(str(source_end.address), "the shard serves none of the streams")
        group = (self.route.from_.group or "").encode()
        self.streams = []
        where = ""
        for streams in groups:
            source = await self._connect(source_end, stack, self._source_timeout())
            sink: EntrySink
            if self.cluster_sink is not None:
                topology, credentials, _on_moved = self.cluster_sink
                sink = ClusterEntrySink(
                    topology,
                    credentials,
                    self._shape.replies_per_message,
                    CONNECT_TIMEOUT,
                    self.route.sink_timeout,
                )
                stack.push_async_callback(self._close_entries, sink)
                where = "the target cluster's masters"
            else:
                sink_end = self.locate_sink(0)
                connection = await self._connect(sink_end, stack, self.route.sink_timeout)
                sink = NodeEntrySink(connection, self._shape.replies_per_message)
                where = str(sink_end.address)
            reader = StreamReader(
                source, [s.encode() for s in streams], group, self.consumer.encode()
            )
            dead = self._stream_dead_letter(sink)
            self.streams.append(
                StreamForwarding(
                    reader,
                    sink,
                    self._entry_command,
                    self._stream_key,
                    STREAM_BATCH,
                    self.route.heartbeat,
                    on_batch=self._count,
                    gate=self.gate,
                    on_answered=self._answered,
                    late_command=self._late_command,
                    oversize=self._stream_oversize(dead),
                    dead_letter=dead,
                    on_given_up=self._on_given_up,
                )
            )
        return first_failure([loop.run() for loop in self.streams]), where

    def _on_oversize(self, count: int, dead_lettered: bool) -> None:
        self.oversized += count
        action = "dead-lettered" if dead_lettered else "dropped"
        self.metrics.oversize.labels(**self._labels, action=action).inc(count)
        now = time.monotonic()
        if now - self._oversize_logged_at >= REFUSAL_LOG_EVERY:  # a line per 10 s at most
            log.warning(
                "%s: %d messages over max_message_bytes (%d) so far, the last %s",
                self.name, self.oversized, self.route.max_message_bytes, action,
            )  # fmt: skip
            self._oversize_logged_at = now

    def _oversize(self, sink: BatchSink) -> Oversize | None:
        limit = self.route.max_message_bytes
        if limit is None:
            return None
        dead = None
        if self._dead_target is not None and self.route.oversize == "dead-letter":
            shape = SinkShape(SinkKind.STREAM, owner=self._shape.owner)
            dead = sink.sibling(
                sink_command(shape, self._dead_target, self.shard), self._dead_target
            )
        return Oversize(limit, self._on_oversize, dead)

    def _stream_dead_letter(self, sink: EntrySink) -> StreamDeadLetter | None:
        target = self._dead_target
        if target is None:
            return None
        shape = SinkShape(SinkKind.STREAM, owner=self._shape.owner)
        return StreamDeadLetter(
            sink.with_replies(1),
            entry_command(shape, target, copy_ids=False),
            lambda stream: target(stream, b""),
        )

    def _stream_oversize(self, dead: StreamDeadLetter | None) -> StreamOversize | None:
        limit = self.route.max_message_bytes
        if limit is None:
            return None
        use = dead if self.route.oversize == "dead-letter" else None
        return StreamOversize(limit, self._on_oversize, use)

    def _on_given_up(self, count: int, dead_lettered: bool) -> None:
        self.given_up += count
        action = "dead-lettered" if dead_lettered else "left-pending"
        self.metrics.refused_for_good.labels(**self._labels, action=action).inc(count)

    def _stream_key(self, stream: bytes) -> bytes:
        return self._target(stream, b"")

    def _dropped(self, count: int) -> None:
        self.dropped += count
        self.metrics.dropped.labels(**self._labels).inc(count)
        if self.dropped == count or self.dropped // 10_000 != (self.dropped - count) // 10_000:
            log.warning(
                "%s: the sink is slower than the source; %d messages dropped so far "
                "(overflow = drop-oldest)",
                self.name,
                self.dropped,
            )

    def _count(self, messages: int, in_flight: int) -> None:
        self.received += messages
        labels = self._labels
        self.metrics.received.labels(**labels).inc(messages)
        self.metrics.batches.labels(**labels).inc()
        self.metrics.batch_size.labels(**labels).observe(messages)
        self.metrics.in_flight.labels(**labels).set(in_flight)

    def _on_refused(self, count: int, reason: str) -> None:
        """Pub/sub messages the sink refused: lost, so counted and said at once (one
        line per REFUSAL_LOG_EVERY seconds at most, with how many since the last)."""
        self.refused_lost += count
        self.metrics.refused.labels(**self._labels).inc(count)
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_EVERY:
            log.warning(
                "%s: the sink refused %d messages (lost; pub/sub is at most once), last: %s",
                self.name, self.refused_lost - self._refusal_logged_count, reason,
            )  # fmt: skip
            self._refusal_logged_at, self._refusal_logged_count = now, self.refused_lost

    def _answered(self, messages: int, seconds: float) -> None:
        self.forwarded += messages
        self.lag = seconds
        self.metrics.forwarded.labels(**self._labels).inc(messages)
        self.metrics.latency.labels(**self._labels).observe(seconds)

    def _open_gap(self, reason: str) -> None:
        if self.gaps and self.gaps[-1].end is None:
            return
        log.warning("%s interrupted: %s", self.name, reason)
        self.gaps.append(Gap(time.time(), reason))
        self.metrics.gaps.labels(**self._labels).inc()

    def _close_gap(self) -> None:
        if self.gaps and self.gaps[-1].end is None:
            gap = self.gaps[-1]
            gap.end = time.time()
            self.metrics.gap_seconds.labels(**self._labels).inc(gap.end - gap.start)
            self.metrics.reconnects.labels(**self._labels).inc()
            log.warning("%s resumed after %.3fs (%s)", self.name, gap.end - gap.start, gap.reason)
