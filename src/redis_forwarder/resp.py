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
from collections.abc import Callable, Iterable
from typing import Any, cast

import hiredis

from redis_forwarder.read_aside import ReadAside

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


# Complete replies held unread before the socket stops being read: past this, Redis
# buffers for us (a subscriber's backlog belongs in Redis' output buffer, whose limit
# then says so, not in this process's memory).
HOLD_BYTES = 1 << 18
# hiredis is fed at most this much at a time: it moves what is left of its buffer
# forward as it consumes it, so one 256 KiB read fed whole cost 1.8x the parsing of
# the same bytes fed 16 KiB at a time (full speed: a third of the loop's CPU, py-spy).
FEED = 1 << 14
_TIMED_OUT: Any = object()  # a read's waiter, woken by its deadline


class RespConnection(asyncio.Protocol):
    """A TCP (or TLS) connection speaking RESP2, for the data path.

    ``open`` connects and authenticates; ``write`` sends at once (what the socket does
    not take is buffered, and ``drain`` waits for it); ``read`` returns every complete
    reply received so far, waiting for one if there is none; or, with ``listen``, each
    read's replies go to a callback as they arrive (a writer's replies: no task wakes up
    for them). Errors become :class:`ConnectionLost`. Not safe for two concurrent
    readers.

    The connection is its own asyncio protocol: hiredis is fed in ``data_received``,
    straight from the event loop. Deadlines are kept by one timer that moves lazily:
    a read sets when it must end, and the timer, when it fires early, sets itself
    again; no timer is made and cancelled per read (issue 16: ``asyncio.timeout`` per
    read and a StreamReader per connection were a third of the loop's cost when
    messages arrive one at a time).
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
        self._reader = hiredis.Reader()
        self._gets = self._reader.gets
        self._replies: list[Any] = []
        self._held = 0  # bytes that brought the unread replies in
        # Bytes read since the last complete reply (at least those of a reply under
        # way): says, when the server cuts the connection, that it did so mid-reply.
        self._unfinished = 0
        self._transport: asyncio.Transport | None = None
        self._failure: ConnectionLost | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._deadline = 0.0  # when the waiting read ends (the loop's clock)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._paused_reading = False
        self._paused_writing = False
        self._drained: asyncio.Future[None] | None = None
        self._on_replies: Callable[[list[Any]], None] | None = None
        self._offer: Callable[[list[Any]], bool] | None = None
        self._on_lost: Callable[[ConnectionLost], None] | None = None
        self._owed_since = 0.0  # listening: since when replies are owed (0.0: none)
        self._aside: ReadAside | None = None
        self._heard_at = 0.0  # listening: when bytes last came
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: asyncio.Future[None] | None = None  # close() waits for the loop's word

    async def open(
        self,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Connect (over TLS with ``tls``: the server's certificate checked against the
        address) and authenticate."""
        self._loop = loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: self,
                    self.host,
                    self.port,
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

    # -- asyncio.Protocol: called by the event loop
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        self._failure = None

    def data_received(self, data: bytes) -> None:
        replies = self._replies
        held = len(replies)  # replies the reading task has not taken yet
        try:
            gets, size = self._gets, len(data)
            if size <= FEED:
                self._reader.feed(data)
                while (reply := gets()) is not False:
                    replies.append(reply)
            else:
                for start in range(0, size, FEED):
                    self._reader.feed(data, start, min(FEED, size - start))
                    while (reply := gets()) is not False:
                        replies.append(reply)
        except hiredis.ProtocolError as exc:
            self._fail(ConnectionLost(self.name, f"read: not RESP ({exc})"))
            return
        if not replies:
            self._unfinished += len(data)
            return
        self._unfinished = 0
        on_replies = self._on_replies
        if on_replies is not None:
            self._heard_at = self._loop.time() if self._loop is not None else 0.0
            self._replies = []
            on_replies(replies)
            return
        offer = self._offer
        if offer is not None and not held:
            # Cleared first: a lane that wrote them and then raised must not see them
            # handed to the task too (a duplicate batch: review).
            self._replies = []
            if offer(replies):
                return  # taken: no task woke up for them
            self._replies = replies
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        self._held += len(data)
        if self._held > HOLD_BYTES and self._transport is not None:
            self._paused_reading = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._fail(
            ConnectionLost(
                self.name, "closed by the server", by_server=True, unfinished=self._unfinished
            )
        )
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            lost = ConnectionLost(
                self.name, "closed by the server", by_server=True, unfinished=self._unfinished
            )
        elif isinstance(exc, ConnectionResetError):  # the server closed, too
            lost = ConnectionLost(
                self.name, f"read: {exc}", by_server=True, unfinished=self._unfinished
            )
        else:
            lost = ConnectionLost(self.name, f"read: {exc}", unfinished=self._unfinished)
        self._fail(lost)
        self._transport = None
        for future in (self._drained, self._closed):
            if future is not None and not future.done():
                future.set_result(None)
        self._drained = self._closed = None

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _fail(self, lost: ConnectionLost) -> None:
        """The first failure is the one kept; a waiting read ends with it."""
        if self._failure is None:
            self._failure = lost
        self._cancel_timer()
        aside, self._aside = self._aside, None
        if aside is not None:
            aside.stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        on_lost, self._on_lost, self._on_replies = self._on_lost, None, None
        if on_lost is not None:
            on_lost(self._failure)

    # -- writing
    def write(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        if transport is None or self._failure is not None:
            raise self._failure or ConnectionLost(self.name, "not connected")
        transport.write(data)

    @property
    def draining(self) -> bool:
        """The socket did not take everything written: ``drain`` would wait."""
        return self._paused_writing

    async def drain(self) -> None:
        """Wait until what was written is (mostly) in the socket: at once unless the
        transport asked to pause (its buffer is over its high-water mark)."""
        if self._failure is not None:
            raise self._failure
        if self._transport is None:
            raise ConnectionLost(self.name, "not connected")
        if not self._paused_writing:
            return
        assert self._loop is not None
        if self._drained is None:
            self._drained = self._loop.create_future()
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(self._drained)
        except TimeoutError:
            raise ConnectionLost(self.name, "write: timed out") from None
        if self._failure is not None:
            raise ConnectionLost(self.name, f"write: {self._failure.reason}") from None

    # -- reading
    async def read(
        self, timeout: float | None = None, *, idle_ok: bool = False, most: int = 0
    ) -> list[Any]:
        """Every complete reply received so far (the first ``most`` of them, if given),
        waiting up to ``timeout`` (default: the connection's) for one. On timeout:
        ``[]`` if ``idle_ok``, else ConnectionLost."""
        if not self._replies:
            await self._wait(self.timeout if timeout is None else timeout, idle_ok)
            if not self._replies:
                return []  # idle: the deadline passed
        if most and len(self._replies) > most:
            replies, self._replies = self._replies[:most], self._replies[most:]
            return replies
        replies, self._replies, self._held = self._replies, [], 0
        if self._paused_reading and self._transport is not None:
            self._paused_reading = False
            self._transport.resume_reading()
        return replies

    async def _wait(self, timeout: float, idle_ok: bool) -> None:
        if self._failure is not None:
            raise self._failure
        loop = self._loop
        if loop is None or self._transport is None:
            raise ConnectionLost(self.name, "not connected")
        self._deadline = deadline = loop.time() + timeout
        if self._timer is None or self._timer_at > deadline:
            self._arm(deadline)
        self._waiter = waiter = loop.create_future()
        try:
            woken = await waiter
        finally:
            self._waiter = None
        if self._replies:
            return
        if self._failure is not None:
            raise self._failure
        if woken is _TIMED_OUT and not idle_ok:
            raise ConnectionLost(self.name, "read: timed out")

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        """The one timer fired: a read past its deadline ends; a listener owed replies
        for ``timeout`` with no byte heard loses the connection; else, set it again for
        the next deadline (reads move theirs on without touching the timer)."""
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if now >= self._deadline - 1e-4:
                waiter.set_result(_TIMED_OUT)
            else:
                self._arm(self._deadline)
        elif self._on_replies is not None and self._owed_since:
            self._read_last()  # replies read aside may be waiting in the socket
            if self._on_replies is None or not self._owed_since:
                return
            silent_since = max(self._owed_since, self._heard_at)
            if now >= silent_since + self.timeout - 1e-4:
                self._fail(ConnectionLost(self.name, "read: timed out"))
                self.abort()
            else:
                self._arm(silent_since + self.timeout)

    def listen(
        self,
        on_replies: Callable[[list[Any]], None],
        on_lost: Callable[[ConnectionLost], None],
    ) -> None:
        """From now on, hand each read's replies to ``on_replies`` as they come, and a
        failure to ``on_lost`` (once). Replies owed (see ``owed``) and not coming for
        ``timeout`` are a lost connection."""
        self._on_replies, self._on_lost = on_replies, on_lost
        if self._failure is not None:
            self._fail(self._failure)
            return
        if self._replies:
            replies, self._replies = self._replies, []
            on_replies(replies)

    def offer_to(self, offer: Callable[[list[Any]], bool] | None) -> None:
        """A fast lane for the reading task: each read's replies are first offered to
        ``offer``, in the event loop's callback; what it takes (it returns True) never
        wakes the task. Offered only when no earlier reply waits to be read, so that
        the order holds."""
        self._offer = offer

    def read_aside(self) -> None:
        """Listening: let writes read the replies that came (``sent``) instead of the
        event loop waking up for each (``read_aside.py``)."""
        if self._transport is not None and self._loop is not None:
            self._aside = ReadAside.of(self._transport, self._loop, self.data_received, self._cut)

    def _cut(self, reason: str, by_server: bool) -> None:
        self._fail(
            ConnectionLost(self.name, reason, by_server=by_server, unfinished=self._unfinished)
        )
        self.abort()

    def sent(self) -> None:
        """Listening: commands were written (the replies that came are read aside)."""
        if self._aside is not None:
            self._aside.sent()

    def hurry(self) -> None:
        """Replies are waited for: the event loop reads them as they come."""
        if self._aside is not None:
            self._aside.hurry()

    def owed(self, waiting: bool) -> None:
        """A listener says whether replies are owed now (``waiting``): silence counts
        from the moment they became owed."""
        if not waiting:
            self._owed_since = 0.0
            return
        if self._owed_since or self._loop is None:
            return
        self._owed_since = now = self._loop.time()
        if self._timer is None:
            self._arm(now + self.timeout)

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
        transport = self._let_go()
        if transport is not None:
            reset(transport)

    def _let_go(self) -> asyncio.Transport | None:
        """The connection's end, before its transport is reset or closed: the replies
        that came are counted, then every read, callback and timer ends."""
        self._read_last()
        transport, self._transport = self._transport, None
        self._fail(ConnectionLost(self.name, "not connected"))
        return transport

    def _read_last(self) -> None:
        """A writer's replies that came and wait unread (read aside) are counted before
        the connection goes."""
        if self._aside is not None and self._aside.active:
            self._aside.read_now()

    async def close(self, *, abort: bool = False) -> None:
        """Close; ``abort`` drops what is still buffered instead of sending it (a task
        that lost its ownership must not let buffered writes reach the sink later)."""
        transport = self._let_go()
        if transport is None:
            return
        if abort:
            reset(transport)
            return
        self._closed = closed = asyncio.get_running_loop().create_future()
        transport.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(closed), 1.0)


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
