"""The ``drop-oldest`` overflow policy: a bounded buffer of encoded batches in front of
a :class:`PipelineWriter`, so that reading never waits for a slow sink.

``send`` never blocks: it queues the batch and, while more than ``capacity`` messages
are queued, drops the oldest whole batches (never the one just added), counting every
dropped message. A pump task feeds the writer (which still bounds what is in flight).
A failure of the pump (the sink's connection lost) surfaces at the next ``send``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from redis_forwarder.sink.writer import PipelineWriter


class DropOldestBuffer:
    def __init__(
        self,
        writer: PipelineWriter,
        capacity: int,
        on_drop: Callable[[int], None],
        replies_per_message: int = 1,
    ) -> None:
        """``capacity`` and every count here are messages, not commands."""
        self.writer = writer
        self.replies_per_message = replies_per_message
        self.capacity = capacity
        self.on_drop = on_drop
        self.queued = 0
        self.dropped = 0
        self._batches: deque[tuple[bytes, int]] = deque()
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._pump: asyncio.Task[None] | None = None

    async def send(self, buffer: bytes, count: int) -> None:
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump())
        elif self._pump.done():
            self._pump.result()  # raises what ended it
        self._batches.append((buffer, count))
        self._empty.clear()
        self.queued += count
        while self.queued > self.capacity and len(self._batches) > 1:
            _, lost = self._batches.popleft()
            self.queued -= lost
            self.dropped += lost
            self.on_drop(lost)
        self._ready.set()

    async def _run_pump(self) -> None:
        while True:
            while not self._batches:
                self._empty.set()
                self._ready.clear()
                await self._ready.wait()
            buffer, count = self._batches.popleft()
            self.queued -= count
            await self.writer.send(buffer, count * self.replies_per_message, count)

    async def drain(self) -> None:
        """Wait until every queued batch went to the writer; raise what ended the pump."""
        while not self._empty.is_set():
            if self._pump is None or self._pump.done():
                if self._pump is not None:
                    self._pump.result()
                return
            waiter = asyncio.ensure_future(self._empty.wait())
            await asyncio.wait([waiter, self._pump], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
