"""What a ZooKeeper request is, apart from kazoo: a transaction's steps, the counts a
session keeps, and the future that carries kazoo's asynchronous answer to the loop.
No kazoo import (its async result is used by its two methods, ``rawlink`` and
``get_nowait``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Operation:
    """One step of a transaction (``ZooKeeperSession.commit``)."""

    kind: str  # "check", "set", "create", "create_ephemeral", "delete"
    path: str
    data: bytes = b""
    version: int = -1

    def add_to(self, transaction: Any) -> None:
        if self.kind == "check":
            transaction.check(self.path, self.version)
        elif self.kind == "set":
            transaction.set_data(self.path, self.data, self.version)
        elif self.kind == "create":
            transaction.create(self.path, self.data)
        elif self.kind == "create_ephemeral":
            transaction.create(self.path, self.data, ephemeral=True)
        else:
            transaction.delete(self.path, self.version)


def rolled_back(result: Exception) -> bool:
    """The steps after a failed one come back as RolledBackError: not the cause."""
    return type(result).__name__ == "RolledBackError"


@dataclass
class RequestStats:
    """What this session asked of ZooKeeper (the fleet bench reads it)."""

    requests: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


def answer(loop: asyncio.AbstractEventLoop, start: Callable[[], Any]) -> asyncio.Future[Any]:
    """A future for kazoo's async result of ``start()``, settled on the loop. kazoo
    calls back on its completion thread; the future is settled only there, once, and
    not after the caller gave up on it (the bound)."""
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any) -> None:
        if future.done():
            return
        try:
            future.set_result(result.get_nowait())
        except Exception as exc:  # kazoo's error: raised where the future is awaited
            future.set_exception(exc)

    def done(result: Any) -> None:  # kazoo's thread
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(settle, result)

    start().rawlink(done)
    return future
