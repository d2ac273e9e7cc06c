"""Where a pub/sub loop's batches go: one node (:class:`SingleNodeSink`) or a Redis
Cluster, each message to the master of its key's slot (:class:`ClusterSink`).

Both take a batch of ``(channel, payload, pattern)`` messages, encode it with the
route's sink command, and write it pipelined; both count refusals, and ``check``
raises ConnectionLost when the sink turned read-only (a master that became a replica).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Protocol

from redis_forwarder.gate import Gate
from redis_forwarder.model import Address, Topology
from redis_forwarder.resp import ConnectionLost, RawMessage, RespConnection
from redis_forwarder.settings import Credentials
from redis_forwarder.sink.commands import SinkCommand
from redis_forwarder.sink.overflow import DropOldestBuffer
from redis_forwarder.sink.writer import PipelineWriter
from redis_forwarder.topology.slots import key_slot


async def open_node(
    address: Address, credentials: Credentials, timeout: float, connect_timeout: float | None
) -> RespConnection:
    """A data-path connection to one sink node, authenticated."""
    connection = RespConnection(
        address.host, address.port, timeout=timeout, connect_timeout=connect_timeout
    )
    tls = credentials.tls.context() if credentials.tls else None
    await connection.open(credentials.username, credentials.password, tls)
    return connection


class BatchSink(Protocol):
    @property
    def refused(self) -> int: ...

    @property
    def last_refusal(self) -> str: ...

    def sibling(self, command: SinkCommand, key_of: Callable[[bytes, bytes], bytes]) -> BatchSink:
        """The same connections, another command (one reply each): dead letters."""
        ...

    async def write(self, batch: Sequence[RawMessage]) -> None: ...

    def in_flight(self) -> int: ...

    def check(self) -> None: ...

    async def flush(self) -> None: ...

    async def close(self, *, abort: bool = False) -> None: ...


class SingleNodeSink:
    def __init__(
        self,
        writer: PipelineWriter,
        command: SinkCommand,
        overflow: DropOldestBuffer | None = None,
        replies_per_message: int = 1,
    ) -> None:
        self.writer = writer
        self.command = command
        self.overflow = overflow
        self.replies_per_message = replies_per_message

    @property
    def refused(self) -> int:
        return self.writer.refused

    @property
    def last_refusal(self) -> str:
        return self.writer.last_refusal

    def sibling(self, command: SinkCommand, key_of: Callable[[bytes, bytes], bytes]) -> BatchSink:
        return SingleNodeSink(self.writer, command)

    async def write(self, batch: Sequence[RawMessage]) -> None:
        command = self.command
        buffer = b"".join([command(*message) for message in batch])
        # Policy block: wait for the writer. drop-oldest: queue, dropping what is oldest.
        if self.overflow is not None:
            await self.overflow.send(buffer, len(batch))
        else:
            await self.writer.send(buffer, len(batch) * self.replies_per_message, len(batch))

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


class RouteCache:
    """Which master each target key goes to, for one topology: hashing a key's slot in
    Python costs more than the rest of a message's work, and targets repeat. Emptied
    when the topology changes, or when it grows past ``LIMIT`` keys."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._topology: Topology | None = None
        self._routes: dict[bytes, Address] = {}

    def of(self, topology: Topology) -> dict[bytes, Address]:
        if topology is not self._topology:
            self._topology, self._routes = topology, {}
        return self._routes

    def route(self, key: bytes) -> Address:
        assert self._topology is not None, "call of() first"
        slot = key_slot(key)
        shard = self._topology.shard_for_slot(slot)
        if shard is None:
            raise ConnectionLost("cluster sink", f"slot {slot} of the target has no master")
        if len(self._routes) >= self.LIMIT:
            self._routes.clear()
        self._routes[key] = shard.master.address
        return shard.master.address


class ClusterSink:
    """Each message to the master that serves its target key's slot, as the target's
    topology says now. A writer per master, opened on first use. A ``MOVED``/``ASK``
    refusal (the topology was behind) is counted, reported through ``on_moved`` so the
    topology is refreshed, and ends the sink's connections (see ``check``)."""

    def __init__(
        self,
        command: SinkCommand,
        key_of: Callable[[bytes, bytes], bytes],
        topology: Callable[[], Topology],
        credentials: Credentials,
        max_in_flight: int,
        timeout: float,
        on_moved: Callable[[str], None],
        replies_per_message: int = 1,
        connect_timeout: float | None = None,
        gate: Gate | None = None,
        on_answered: Callable[[int, float], None] | None = None,
    ) -> None:
        self.command = command
        self.key_of = key_of
        self.topology = topology
        self.credentials = credentials
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.on_moved = on_moved
        self.replies_per_message = replies_per_message
        self.connect_timeout = connect_timeout
        self.gate = gate
        self.on_answered = on_answered
        self.writers: dict[Address, PipelineWriter] = {}
        self._moved_seen = 0
        self._routes = RouteCache()

    @property
    def refused(self) -> int:
        return sum(w.refused for w in self.writers.values())

    @property
    def last_refusal(self) -> str:
        return next((w.last_refusal for w in self.writers.values() if w.last_refusal), "")

    def sibling(self, command: SinkCommand, key_of: Callable[[bytes, bytes], bytes]) -> BatchSink:
        twin = ClusterSink(
            command, key_of, self.topology, self.credentials, self.max_in_flight,
            self.timeout, self.on_moved, 1, self.connect_timeout, self.gate, self.on_answered,
        )  # fmt: skip
        twin.writers = self.writers  # shared: the main sink opens and closes them
        return twin

    async def write(self, batch: Sequence[RawMessage]) -> None:
        routes = self._routes.of(self.topology())
        key_of, command = self.key_of, self.command
        groups: dict[Address, list[bytes]] = {}
        for channel, payload, pattern in batch:
            key = key_of(channel, pattern)
            address = routes.get(key) or self._routes.route(key)
            groups.setdefault(address, []).append(command(channel, payload, pattern))
        for address, commands in groups.items():
            writer = await self._writer(address)
            await writer.send(
                b"".join(commands), len(commands) * self.replies_per_message, len(commands)
            )

    async def _writer(self, address: Address) -> PipelineWriter:
        writer = self.writers.get(address)
        if writer is None:
            connection = await open_node(
                address, self.credentials, self.timeout, self.connect_timeout
            )
            writer = PipelineWriter(connection, self.max_in_flight, self.gate, self.on_answered)
            writer.start()
            self.writers[address] = writer
        return writer

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
