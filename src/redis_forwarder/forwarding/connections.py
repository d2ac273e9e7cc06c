"""Every data-path connection of one task, opened in one place: :class:`TaskConnections`.

Why one place: a task that is told to stop must be able to end every connection it
has *at once* (a reset: nothing buffered goes out, and no read can follow), and to
refuse to open another one, whatever its loops are doing at that moment. A cluster
sink opens connections lazily, deep in a write: it gets ``connect`` from here.
(Issue 13: a stopped task whose cancellation was swallowed during clean-up
re-subscribed and claimed stream entries for 5 s as a zombie consumer.)
"""

from __future__ import annotations

from redis_forwarder.model import Address
from redis_forwarder.resp import ConnectionLost, RespConnection
from redis_forwarder.settings import Credentials
from redis_forwarder.sink.routing import Connect

CONNECT_TIMEOUT = 2.0


class TaskConnections:
    def __init__(self, name: str, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.name = name
        self.connect_timeout = connect_timeout
        self.closed = False  # no connection opens after the task began to stop
        self._open: set[RespConnection] = set()

    async def open(
        self, address: Address, credentials: Credentials, timeout: float
    ) -> RespConnection:
        """A connection to ``address``, authenticated, with ``timeout`` for replies."""
        self._refuse_if_closed(address)
        connection = RespConnection(
            address.host, address.port, timeout=timeout, connect_timeout=self.connect_timeout
        )
        self._open.add(connection)
        tls = credentials.tls.context() if credentials.tls else None
        try:
            await connection.open(credentials.username, credentials.password, tls)
        except BaseException:
            self._open.discard(connection)
            connection.abort()
            raise
        if self.closed:  # the stop came while we connected
            self.release(connection)
            self._refuse_if_closed(address)
        return connection

    def connector(self, credentials: Credentials) -> Connect:
        """``open`` with these credentials: what a cluster sink opens its nodes with."""

        async def connect(address: Address, timeout: float) -> RespConnection:
            return await self.open(address, credentials, timeout)

        return connect

    def release(self, connection: RespConnection) -> None:
        """Forget ``connection`` (its owner closed it, or is about to); reset it if it is
        still open."""
        self._open.discard(connection)
        connection.abort()

    async def close(self, connection: RespConnection, *, abort: bool) -> None:
        """Close one connection: gracefully (what is buffered is sent) unless ``abort``."""
        self._open.discard(connection)
        await connection.close(abort=abort)

    def clear(self) -> None:
        """An attempt ended and closed what it opened: reset anything left open, and
        forget them all (the task may try again with new connections)."""
        for connection in list(self._open):
            self.release(connection)

    def stop(self) -> None:
        """Open nothing more (the task is stopping)."""
        self.closed = True

    def abort_all(self) -> None:
        """Open nothing more, and reset every open connection now: no write leaves, no
        read returns data."""
        self.stop()
        self.clear()

    def _refuse_if_closed(self, address: Address) -> None:
        if self.closed:
            raise ConnectionLost(str(address), f"{self.name} is stopping: no new connection")
