"""Where a stream task's entries go, with one answer per entry: the stream loop must
know which entries the sink took before it acknowledges them (XACK).

:class:`NodeStreamSink` writes to one node; :class:`ClusterStreamSink` sends each entry
to the master of its target key's slot, the nodes written to at the same time, and
hands the answers back in the entries' order. An entry whose command has several
replies (RPUSH then LTRIM) is answered by its first error, or else its first reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis_forwarder.model import Address, Topology
from redis_forwarder.resp import ConnectionLost, ReplyError, RespConnection
from redis_forwarder.sink.replication import UNREPLICATED, WaitConfig
from redis_forwarder.sink.routing import Connect, RouteCache

Keyed = tuple[bytes, bytes]  # (target key, the encoded command(s) of one entry)


class StreamSink(Protocol):
    name: str

    async def write(self, commands: Sequence[Keyed]) -> list[Any]: ...

    def with_replies(self, replies_per_entry: int) -> StreamSink:
        """The same connections, commands of another reply count (dead letters); used
        in turn with this sink, never at the same time."""
        ...

    async def close(self, *, abort: bool = False) -> None: ...


def _answers(replies: list[Any], per_entry: int) -> list[Any]:
    if per_entry == 1:
        return replies
    answers = []
    for start in range(0, len(replies), per_entry):
        group = replies[start : start + per_entry]
        answers.append(next((r for r in group if isinstance(r, ReplyError)), group[0]))
    return answers


class NodeStreamSink:
    def __init__(
        self, connection: RespConnection, replies_per_entry: int, wait: WaitConfig | None = None
    ) -> None:
        """``wait``: end each write with WAIT; if fewer replicas than asked have it in
        time, every entry the master took is answered :data:`UNREPLICATED`."""
        self.connection = connection
        self.name = connection.name
        self.replies_per_entry = replies_per_entry
        self.wait = wait
        self._wait_command = wait.command() if wait is not None else b""
        self.replicas_acked: object = None  # WAIT's last answer (for the log line)

    def with_replies(self, replies_per_entry: int) -> StreamSink:
        return NodeStreamSink(self.connection, replies_per_entry, self.wait)

    async def write(self, commands: Sequence[Keyed]) -> list[Any]:
        buffer = b"".join([command for _key, command in commands])
        count = len(commands) * self.replies_per_entry
        if self.wait is None:  # the default path: as cheap as before WAIT existed
            return _answers(await self.connection.call_many(buffer, count), self.replies_per_entry)
        replies = await self.connection.call_many(buffer + self._wait_command, count + 1)
        self.replicas_acked = acked = replies.pop()
        answers = _answers(replies, self.replies_per_entry)
        if isinstance(acked, int) and acked >= self.wait.replicas:
            return answers
        return [a if isinstance(a, ReplyError) else UNREPLICATED for a in answers]

    async def close(self, *, abort: bool = False) -> None:
        await self.connection.close(abort=abort)


class ClusterStreamSink:
    """Entries to the masters of a cluster, as its topology says now; a connection per
    master, opened on first use. A MOVED answer means the topology was behind: the
    caller treats it as a lost connection, which refreshes the topology."""

    name = "cluster sink"

    def __init__(
        self,
        topology: Callable[[], Topology],
        connect: Connect,
        replies_per_entry: int,
        timeout: float,
        wait: WaitConfig | None = None,
    ) -> None:
        """``wait``: each master's part of a write ends with WAIT (its own replicas);
        the entries of a part too few of them acknowledged are :data:`UNREPLICATED`."""
        self.topology = topology
        self.connect = connect
        self.replies_per_entry = replies_per_entry
        self.timeout = timeout
        self.wait = wait
        self._wait_command = wait.command() if wait is not None else b""
        self.replicas_acked: object = None  # the last short WAIT answer (for the log line)
        self.connections: dict[Address, RespConnection] = {}
        self._routes = RouteCache()

    def with_replies(self, replies_per_entry: int) -> StreamSink:
        twin = ClusterStreamSink(
            self.topology, self.connect, replies_per_entry, self.timeout, self.wait
        )
        twin.connections = self.connections  # shared: this sink closes them
        return twin

    async def write(self, commands: Sequence[Keyed]) -> list[Any]:
        routes = self._routes.of(self.topology())
        positions: dict[Address, list[int]] = {}
        for index, (key, _command) in enumerate(commands):
            address = routes.get(key) or self._routes.route(key)
            positions.setdefault(address, []).append(index)
        answers: list[Any] = [None] * len(commands)

        async def write_to(address: Address, indexes: list[int]) -> None:
            connection = await self._connection(address)
            buffer = b"".join([commands[i][1] for i in indexes])
            count = len(indexes) * self.replies_per_entry
            if self.wait is None:
                replies = await connection.call_many(buffer, count)
                entry_answers = _answers(replies, self.replies_per_entry)
            else:
                replies = await connection.call_many(buffer + self._wait_command, count + 1)
                entry_answers = self._replicated(replies.pop(), replies)
            for index, answer in zip(indexes, entry_answers, strict=True):
                answers[index] = answer

        await asyncio.gather(*(write_to(a, i) for a, i in positions.items()))
        return answers

    def _replicated(self, acked: object, replies: list[Any]) -> list[Any]:
        answers = _answers(replies, self.replies_per_entry)
        if self.wait is not None and isinstance(acked, int) and acked >= self.wait.replicas:
            return answers
        self.replicas_acked = acked
        return [a if isinstance(a, ReplyError) else UNREPLICATED for a in answers]

    async def _connection(self, address: Address) -> RespConnection:
        connection = self.connections.get(address)
        if connection is None:
            connection = await self.connect(address, self.timeout)
            self.connections[address] = connection
        return connection

    async def close(self, *, abort: bool = False) -> None:
        for connection in self.connections.values():
            with contextlib.suppress(ConnectionLost):
                await connection.close(abort=abort)
        self.connections.clear()
