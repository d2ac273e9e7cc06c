"""Control connections to Redis nodes and sentinels, and the one place where redis-py's
exceptions become ours.

Topology work is control work: a few commands per second at most, so redis-py's asyncio
client is right here (the data path has its own lean wire code). One client per address,
reused across calls, closed with the pool.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from redis_forwarder.errors import AuthenticationError
from redis_forwarder.model import Address
from redis_forwarder.settings import Credentials

_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "invalid username-password", "invalid password")


class NodeFailed(Exception):
    """One node did not answer usefully. Discovery tries another; ``reason`` is short."""

    def __init__(self, address: Address, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class CommandRefused(NodeFailed):
    """The node answered with an error reply (ERR unknown command, ...)."""


class Connections:
    """A client per address, with the credentials and timeout of one kind of server."""

    def __init__(self, credentials: Credentials, timeout: float, what: str) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._what = what  # "redis" or "sentinel", for error messages
        self._clients: dict[Address, aioredis.Redis] = {}
        # When a server last answered anything (monotonic): an error reply is an answer
        # too. A node that hears nothing from a deployment for long is cut off from it.
        self.answered_at = time.monotonic()

    def client(self, address: Address) -> aioredis.Redis:
        if address not in self._clients:
            self._clients[address] = aioredis.Redis(
                host=address.host,
                port=address.port,
                username=self._credentials.username,
                password=self._credentials.password,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                decode_responses=True,
                # Discovery has its own retry across nodes; redis-py's default retries
                # (3, with backoff) would only stretch the time to notice a dead node.
                retry=Retry(NoBackoff(), 0),
                **(self._credentials.tls.redis_py() if self._credentials.tls else {}),
            )
        return self._clients[address]

    async def call(self, address: Address, *command: Any) -> Any:
        """Run one command; raise NodeFailed, CommandRefused or AuthenticationError."""
        try:
            reply = await self.client(address).execute_command(*command)  # type: ignore[no-untyped-call]
        except redis_errors.AuthenticationError as exc:
            self.answered_at = time.monotonic()
            raise AuthenticationError(str(address), self._what, _auth_reason(exc)) from None
        except redis_errors.ResponseError as exc:
            self.answered_at = time.monotonic()
            message = str(exc)
            if any(marker in message for marker in _AUTH_MARKERS):
                raise AuthenticationError(str(address), self._what, _auth_reason(exc)) from None
            raise CommandRefused(address, message) from exc
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            await self.forget(address)
            raise NodeFailed(address, str(exc) or type(exc).__name__) from exc
        except redis_errors.RedisError as exc:
            raise NodeFailed(address, str(exc)) from exc
        self.answered_at = time.monotonic()
        return reply

    async def forget(self, address: Address) -> None:
        client = self._clients.pop(address, None)
        if client is not None:
            await client.aclose()

    async def close(self) -> None:
        for address in list(self._clients):
            await self.forget(address)


def _auth_reason(exc: Exception) -> str:
    # Redis' own messages name no secret; keep only their first words.
    return str(exc).split(".")[0][:120] or "authentication failed"
