"""Where a pub/sub task's batches go: one node (:class:`NodePubSubSink`) or a Redis
Cluster, each message to the master of its key's slot (:class:`ClusterPubSubSink`).

Both take a batch of ``(channel, payload, pattern)`` messages, encode it with the
route's sink command, and write it pipelined; both keep the refusals they saw (the
loop's control state: back off, or reconnect), and ``check`` raises ConnectionLost when
the sink turned read-only (a master that became a replica) or moved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from redis_forwarder.gate import Gate
from redis_forwarder.model import Address, Topology
from redis_forwarder.resp import ConnectionLost, RawMessage
from redis_forwarder.sink.commands import SinkCommand
from redis_forwarder.sink.overflow import DropOldestBuffer
from redis_forwarder.sink.routing import Connect, RouteCache
from redis_forwarder.sink.writer import BatchWatch, PipelineWriter, replies_owed

if TYPE_CHECKING:
    from redis_forwarder.forwarding.metrics import TaskMetrics


class PubSubSink(Protocol):
    @property
    def refused(self) -> int: ...

    @property
    def last_refusal(self) -> str: ...

    def sibling(self, command: SinkCommand, key_of: Callable[[bytes, bytes], bytes]) -> PubSubSink:
        """The same connections, another command (one reply each): dead letters."""
        ...

    async def write(self, batch: Sequence[RawMessage], mark: bytes | None = None) -> None:
        """Write ``batch``, then ``mark`` (one command, no message: a watermark) on the
        connection that carries the mark key: as durable as the writes before it."""
        ...

    def in_flight(self) -> int: ...

    def ready_now(self, commands: int) -> bool:
        """Whether ``commands`` commands could be written at once, from the event loop's
        callback, with nothing to wait for (the pub/sub loop's fast lane)."""
        ...

    def put_now(self, batch: Sequence[RawMessage], mark: bytes | None) -> None:
        """Write ``batch`` (then ``mark``) at once: ``ready_now`` said so."""
        ...

    def check(self) -> None: ...

    async def flush(self) -> None: ...

    async def close(self, *, abort: bool = False) -> None: ...


class NodePubSubSink:
    def __init__(
        self,
        writer: PipelineWriter,
        command: SinkCommand,
        overflow: DropOldestBuffer | None = None,
        replies_each: int = 1,
        watch: BatchWatch | None = None,
    ) -> None:
        """``watch``: each batch ends with its suffix (WAIT) and its replies go to it
        (the ids a stream sink gave, looked for after the sink's failover)."""
        self.writer = writer
        self.command = command
        self.overflow = overflow
        self.replies_each = replies_each
        self.watch = watch

    @property
    def refused(self) -> int:
        return self.writer.refused

    @property
    def last_refusal(self) -> str:
        return self.writer.last_refusal

    def sibling(self, command: SinkCommand, key_of: Callable[[bytes, bytes], bytes]) -> PubSubSink:
        return NodePubSubSink(self.writer, command)

    async def write(self, batch: Sequence[RawMessage], mark: bytes | None = None) -> None:
        if batch:
            await self._write(batch)
        if mark is not None:  # alone, after the batch, on its connection: as durable
            if self.overflow is not None:
                await self.overflow.send(mark, 0, extra=1)
            else:
                await self.writer.send(mark, 0, extra=1)

    def _encode(self, batch: Sequence[RawMessage]) -> bytes:
        command = self.command
        return b"".join([command(*message) for message in batch])

    async def _write(self, batch: Sequence[RawMessage]) -> None:
        buffer = self._encode(batch)
        watch = self.watch
        if watch is not None:  # apart, so that the default path stays as it was
            tag = watch.tag(batch)
            if self.overflow is not None:
                await self.overflow.send(buffer + watch.suffix, len(batch), tag)
            else:
                await self.writer.send(
                    buffer + watch.suffix, len(batch), self.replies_each, watch, tag
                )
            return
        # Policy block: wait for the writer. drop-oldest: queue, dropping what is oldest.
        if self.overflow is not None:
            await self.overflow.send(buffer, len(batch))
        else:
            await self.writer.send(buffer, len(batch), self.replies_each)

    def ready_now(self, commands: int) -> bool:
        """The plain node sink only: drop-oldest and a watch go the ordinary way."""
        if self.overflow is not None or self.watch is not None:
            return False
        return self.writer.ready(replies_owed(commands, self.replies_each))

    def put_now(self, batch: Sequence[RawMessage], mark: bytes | None) -> None:
        buffer, messages = self._encode(batch), len(batch)
        if mark is None:
            self.writer.put(buffer, replies_owed(messages, self.replies_each), messages)
        else:  # the mark after the batch, in the same write: one command more
            count = replies_owed(messages, self.replies_each, extra=1)
            self.writer.put(buffer + mark, count, messages)

    def in_flight(self) -> int:
        return self.writer.in_flight

    def check(self) -> None:
        if self.writer.refused and self.writer.last_refusal.startswith("READONLY"):
            raise ConnectionLost(self.writer.connection.name, "sink is READONLY (a replica now)")

    async def flush(self) -> None:
        if self.overflow is not None:
            await self.overflow.drain()
        await self.writer.flush()

    async def close(self, *, abort: bool = False) -> None:
        if self.overflow is not None:
            await self.overflow.close()
        with contextlib.suppress(ConnectionLost):
            await self.writer.close(abort=abort)


class ClusterPubSubSink:
    """Each message to the master that serves its target key's slot, as the target's
    topology says now. A writer per master, opened on first use. A ``MOVED``/``ASK``
    refusal (the topology was behind) is reported through ``on_moved`` so the topology
    is refreshed, and ends the sink's connections (see ``check``)."""

    def __init__(
        self,
        command: SinkCommand,
        key_of: Callable[[bytes, bytes], bytes],
        topology: Callable[[], Topology],
        connect: Connect,
        metrics: TaskMetrics,
        max_in_flight: int,
        timeout: float,
        on_moved: Callable[[str], None],
        replies_each: int = 1,
        gate: Gate | None = None,
        watch: BatchWatch | None = None,
    ) -> None:
        """``watch``: each master's part of a batch ends with its suffix (WAIT: that
        master's replicas) and its replies go to it."""
        self.command = command
        self.watch = watch
        self.key_of = key_of
        self.topology = topology
        self.connect = connect
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.on_moved = on_moved
        self.replies_each = replies_each
        self.gate = gate
        self.writers: dict[Address, PipelineWriter] = {}
        self._moved_seen = 0
        self._routes = RouteCache()
        self.mark_key = b""  # the watermark's key, when the task writes watermarks

    @property
    def refused(self) -> int:
        return sum(w.refused for w in self.writers.values())

    @property
    def last_refusal(self) -> str:
        return next((w.last_refusal for w in self.writers.values() if w.last_refusal), "")

    def sibling(self, command: SinkCommand, key_of: Callable[[bytes, bytes], bytes]) -> PubSubSink:
        twin = ClusterPubSubSink(
            command, key_of, self.topology, self.connect, self.metrics, self.max_in_flight,
            self.timeout, self.on_moved, 1, self.gate,
        )  # fmt: skip
        twin.writers = self.writers  # shared: the main sink opens and closes them
        return twin

    async def write(self, batch: Sequence[RawMessage], mark: bytes | None = None) -> None:
        routes = self._routes.of(self.topology())
        key_of, command = self.key_of, self.command
        groups: dict[Address, list[bytes]] = {}
        for channel, payload, pattern in batch:
            key = key_of(channel, pattern)
            address = routes.get(key) or self._routes.route(key)
            groups.setdefault(address, []).append(command(channel, payload, pattern))
        watch = self.watch
        for address, commands in groups.items():
            writer = await self._writer(address)
            if watch is None:
                await writer.send(b"".join(commands), len(commands), self.replies_each)
            else:
                buffer = b"".join(commands) + watch.suffix
                await writer.send(buffer, len(commands), self.replies_each, watch)
        if mark is not None and self.mark_key:
            # Last, after every master's share is on its socket: a watermark on one
            # master vouches for the others only as far as their sockets deliver (a
            # kill -9 still sends what the kernel holds; a partition may not).
            writer = await self._writer(self._routes.route(self.mark_key))
            await writer.send(mark, 0, extra=1)

    async def _writer(self, address: Address) -> PipelineWriter:
        writer = self.writers.get(address)
        if writer is None:
            connection = await self.connect(address, self.timeout)
            writer = PipelineWriter(connection, self.metrics, self.max_in_flight, self.gate)
            writer.start()
            self.writers[address] = writer
        return writer

    def ready_now(self, commands: int) -> bool:
        return False  # a batch may need a new master's connection: the ordinary way

    def put_now(self, batch: Sequence[RawMessage], mark: bytes | None) -> None:
        raise NotImplementedError("ready_now is always False")

    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.writers.values())

    def check(self) -> None:
        """A MOVED/ASK refusal (a failover or a migration on the target) refreshes the
        target's topology and ends the connections: the task reconnects where the slots
        are now, and the interruption is a counted gap, not a silent run of refusals."""
        for writer in self.writers.values():
            refusal = writer.last_refusal
            if refusal.startswith(("MOVED", "ASK")) and writer.refused > self._moved_seen:
                self._moved_seen = writer.refused
                self.on_moved(f"cluster sink: {refusal}")
                raise ConnectionLost(writer.connection.name, f"the sink answered {refusal}")
            if writer.refused and refusal.startswith("READONLY"):
                raise ConnectionLost(writer.connection.name, "sink is READONLY (a replica now)")

    async def flush(self) -> None:
        for writer in list(self.writers.values()):
            await writer.flush()

    async def close(self, *, abort: bool = False) -> None:
        for writer in self.writers.values():
            with contextlib.suppress(ConnectionLost):
                await writer.close(abort=abort)
        self.writers.clear()
