"""The lean wire path: RESP commands encoded once into bytes, replies parsed by hiredis.

Shared by sources and sinks (they never import each other). redis-py is right for
control work and wrong for the data path: a whole batch is encoded into one buffer and
written with one syscall, and every complete reply in a read is parsed in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import hiredis

ReplyError = hiredis.ReplyError
RawMessage = tuple[bytes, bytes, bytes]  # a pub/sub message: channel, payload, pattern


def encode(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


def encode_many(commands: Iterable[tuple[bytes, ...]]) -> bytes:
    """Several commands in one buffer, for one write (a pipeline, not a transaction)."""
    return b"".join(encode(*command) for command in commands)


class ReplyParser:
    """Incremental RESP parser: feed what the socket gave, take every complete reply.

    Error replies come back as :class:`ReplyError` values, not raised, so that one
    refused command in a pipelined batch is seen in its place.
    """

    def __init__(self) -> None:
        self._reader = hiredis.Reader()

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def replies(self) -> Iterator[Any]:
        while (reply := self._reader.gets()) is not False:
            yield reply


class ConnectionLost(Exception):
    """The connection failed or timed out; ``reason`` is short and holds no secret.
    ``by_server``: the server closed or reset it (not a timeout, not our own abort);
    ``unfinished``: bytes of a reply that had begun to arrive and never ended."""

    def __init__(
        self, address: str, reason: str, *, by_server: bool = False, unfinished: int = 0
    ) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason
        self.by_server = by_server
        self.unfinished = unfinished


READ_SIZE = 1 << 16


class RespConnection:
    """A TCP (or TLS) connection speaking RESP2, for the data path.

    ``open`` connects and authenticates; ``write`` queues bytes (flushed by ``drain``);
    ``read`` waits for the next chunk and returns every complete reply in it. Errors
    become :class:`ConnectionLost`. Not safe for two concurrent readers.
    """

    def __init__(
        self, host: str, port: int, *, timeout: float, connect_timeout: float | None = None
    ) -> None:
        """``timeout``: how long a reply or a write may take; ``connect_timeout``: how
        long connecting may take (default: ``timeout``)."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.name = f"{host}:{port}"
        self._parser = ReplyParser()
        # Bytes read since the last complete reply (at least those of a reply under
        # way): says, when the server cuts the connection, that it did so mid-reply.
        self._unfinished = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(
        self,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Connect (over TLS with ``tls``: the server's certificate checked against the
        address) and authenticate."""
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    limit=READ_SIZE,
                    ssl=tls,
                    server_hostname=self.host if tls is not None else None,
                ),
                self.connect_timeout,
            )
        except ssl.SSLError as exc:
            reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise ConnectionLost(self.name, f"TLS handshake failed: {reason}") from None
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(self.name, str(exc) or type(exc).__name__) from None
        if password is not None:
            args = (
                (b"AUTH", username.encode(), password.encode())
                if username
                else (b"AUTH", password.encode())
            )
            reply = await self.call(*args)
            if isinstance(reply, ReplyError):
                await self.close()
                raise ConnectionLost(self.name, f"AUTH refused: {str(reply).split('.')[0]}")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._writer is None:
            raise ConnectionLost(self.name, "not connected")
        self._writer.write(data)

    async def drain(self) -> None:
        if self._writer is None:
            raise ConnectionLost(self.name, "not connected")
        transport = self._writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            return  # everything went straight to the socket: nothing to wait for
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(self.name, f"write: {exc or type(exc).__name__}") from None

    async def read(self, timeout: float | None = None, *, idle_ok: bool = False) -> list[Any]:
        """The complete replies of the next chunk, waiting up to ``timeout`` (default: the
        connection's). On timeout: ``[]`` if ``idle_ok``, else ConnectionLost."""
        if self._reader is None:
            raise ConnectionLost(self.name, "not connected")
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for costs a task per read, and this
                # runs once per batch on the hot path.
                async with asyncio.timeout(self.timeout if timeout is None else timeout):
                    data = await self._reader.read(READ_SIZE)
            except TimeoutError:
                if idle_ok:
                    return []
                raise ConnectionLost(self.name, "read: timed out") from None
            except OSError as exc:
                reset = isinstance(exc, ConnectionResetError)  # the server closed, too
                raise ConnectionLost(
                    self.name, f"read: {exc}", by_server=reset, unfinished=self._unfinished
                ) from None
            if not data:
                raise ConnectionLost(
                    self.name, "closed by the server", by_server=True, unfinished=self._unfinished
                )
            self._parser.feed(data)
            replies = list(self._parser.replies())
            if replies:
                self._unfinished = 0
                return replies
            self._unfinished += len(data)

    async def call(self, *args: bytes) -> Any:
        """One command and its reply (control use: nothing else may be in flight)."""
        return (await self.call_many(encode(*args), 1))[0]

    async def call_many(self, buffer: bytes, count: int) -> list[Any]:
        """Write ``count`` pipelined commands and return their ``count`` replies in order
        (error replies in their place). Nothing else may be in flight."""
        self.write(buffer)
        await self.drain()
        replies: list[Any] = []
        while len(replies) < count:
            replies.extend(await self.read())
        return replies

    def abort(self) -> None:
        """Reset the connection now, from synchronous code: nothing buffered is sent,
        and every read or write after this raises ConnectionLost (a read waiting now
        ends with it). How a task stops at once: no read, subscribe or claim can follow
        (issue 13: a stopped task's cancellation was swallowed, and it read on)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            reset(writer.transport)

    async def close(self, *, abort: bool = False) -> None:
        """Close; ``abort`` drops what is still buffered instead of sending it (a task
        that lost its ownership must not let buffered writes reach the sink later)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None and abort:
            reset(writer.transport)
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


_LINGER_NONE = struct.pack("ii", 1, 0)


def reset(transport: asyncio.WriteTransport) -> None:
    """Close a connection with a reset, dropping what is buffered in the kernel too.
    ``transport.abort()`` alone drops only asyncio's buffer: the kernel would go on
    sending what the socket holds, and after a partition heals those writes would reach
    the sink from an owner that has long given its task up."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NONE)
    transport.abort()
