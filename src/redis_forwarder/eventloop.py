"""Which event loop runs a node: uvloop (libuv, in C) when it is installed, else
asyncio's own; ``REDIS_FORWARDER_LOOP=asyncio`` asks for asyncio's.

Why uvloop: when publishers send one message at a time, every message is a wake-up of
the loop, and the loop's own work per wake-up (polling, the transport's read and write,
scheduling the callbacks) is a large part of what a message costs. Measured with
``redis-forwarder bench`` (docs/performance.md, issue 16). The data path uses only
protocols, transports and timers, which both loops provide alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
ENV = "REDIS_FORWARDER_LOOP"
CHOICES = ("uvloop", "asyncio")


def chosen() -> str:
    """``uvloop`` or ``asyncio``: what ``run`` will use."""
    wanted = os.environ.get(ENV, "").strip().lower() or "uvloop"
    if wanted not in CHOICES:
        raise ValueError(f"{ENV}={wanted!r}: choose uvloop or asyncio")
    if wanted == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"  # not installed (a platform without wheels): asyncio's
    return wanted


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    if chosen() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


async def first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Until the first of ``waits`` ends; the others are cancelled (a node's cycle waits
    for a stop or a wake-up, whichever comes first)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
