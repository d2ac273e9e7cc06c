"""The ``drop-oldest`` overflow policy: a bounded buffer of encoded batches in front of
a :class:`PipelineWriter`, so that reading never waits for a slow sink.

``send`` never blocks: it queues the batch and, while more than ``capacity`` messages
are queued, drops the oldest whole batches (never the one just added), each dropped
message counted in the task's metrics. A pump task feeds the writer (which still
bounds what is in flight). A failure of the pump (the sink's connection lost) surfaces
at the next ``send``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from redis_forwarder.sink.writer import BatchWatch, PipelineWriter

if TYPE_CHECKING:
    from redis_forwarder.forwarding.metrics import TaskMetrics


class DropOldestBuffer:
    def __init__(
        self,
        writer: PipelineWriter,
        capacity: int,
        metrics: TaskMetrics,
        replies_each: int = 1,
        watch: BatchWatch | None = None,
    ) -> None:
        """``capacity`` and every count here are messages, not commands; ``watch``
        goes with each batch to the writer (see ``PipelineWriter.send``)."""
        self.writer = writer
        self.replies_each = replies_each
        self.watch = watch
        self.capacity = capacity
        self.metrics = metrics
        self.queued = 0
        self._batches: deque[tuple[bytes, int, object, int]] = deque()  # + tag, extra
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._pump: asyncio.Task[None] | None = None

    async def send(self, buffer: bytes, messages: int, tag: object = None, extra: int = 0) -> None:
        """``extra``: commands in ``buffer`` that are no message (a watermark: sent
        alone, with no watch)."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump())
        elif self._pump.done():
            self._pump.result()  # raises what ended it
        self._batches.append((buffer, messages, tag, extra))
        self._empty.clear()
        self.queued += messages
        while self.queued > self.capacity and len(self._batches) > 1:
            _, lost, _tag, _extra = self._batches.popleft()
            self.queued -= lost
            self.metrics.drop(lost)
        self._ready.set()

    async def _run_pump(self) -> None:
        while True:
            while not self._batches:
                self._empty.set()
                self._ready.clear()
                await self._ready.wait()
            buffer, messages, tag, extra = self._batches.popleft()
            self.queued -= messages
            if extra:
                await self.writer.send(buffer, messages, extra=extra)
            else:
                await self.writer.send(buffer, messages, self.replies_each, self.watch, tag)

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
            await asyncio.wait({self._pump})  # not await: see PipelineWriter.close
