"""Pipelined writes to one Redis node: batches go out as one buffer each, replies are
read as they come back, and a bound on commands in flight gives backpressure.

Contract: ``send`` returns once the batch is written to the socket and fewer than
``max_in_flight`` commands await their reply; ``flush`` returns once every reply is in.
Each error reply is counted in ``refused`` with the last one kept (the loop's control
state), and reported to the task's metrics as it comes; replies are never matched to
messages here (the caller knows its batch order if it needs to). A batch sent with a
:class:`BatchWatch` is the exception: its replies are kept and handed to the watch
once the batch is answered (what the sink returned for XADD, and WAIT's answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis_forwarder.gate import Gate
from redis_forwarder.resp import ConnectionLost, RawMessage, ReplyError, RespConnection

if TYPE_CHECKING:
    from redis_forwarder.forwarding.metrics import TaskMetrics

DEFAULT_MAX_IN_FLIGHT = 20_000
# Replies are read aside by writes (RespConnection.read_aside) only while few are owed:
# a busy pipeline's replies come in large reads, which the event loop does best, and
# reading aside there paused and resumed the socket's reading at every batch.
ASIDE_BELOW = 1000
ANSWERS_AT_CLOSE = 0.05  # seconds a closing writer waits for answers on their way


class BatchWatch(Protocol):
    """Reads one batch's replies when all are in: ``suffix`` is sent after the batch's
    commands (WAIT) and answered by ``extra_replies`` more replies; ``tag`` is what the
    watch needs of the batch later (its sink keys), taken when it is sent."""

    suffix: bytes
    extra_replies: int

    def tag(self, batch: Sequence[RawMessage]) -> object: ...

    def answered(self, tag: object, replies: list[Any]) -> None: ...

    def unanswered(self, messages: int) -> None:
        """The connection closed before the batch's replies were all in."""
        ...


@dataclass(slots=True)
class _Batch:
    sent_at: float
    owed: int  # replies not yet read
    messages: int
    watch: BatchWatch | None = None
    tag: object = None
    replies: list[Any] | None = None  # kept only for a watch


class PipelineWriter:
    def __init__(
        self,
        connection: RespConnection,
        metrics: TaskMetrics,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        gate: Gate | None = None,
    ) -> None:
        """``gate``: while it is closed, ``send`` waits before writing anything. Each
        batch's last reply reports to ``metrics`` how long the batch took; refusals
        are reported as lost (this writer carries pub/sub, which is at most once)."""
        self.connection = connection
        self.metrics = metrics
        self.gate = gate
        self._batches: deque[_Batch] = deque()
        self.max_in_flight = max_in_flight
        self.sent = 0
        self.confirmed = 0
        self.refused = 0
        self.last_refusal = ""
        self._progress = asyncio.Event()
        self._failure: ConnectionLost | None = None

    @property
    def in_flight(self) -> int:
        return self.sent - self.confirmed

    def start(self) -> None:
        """Replies are handled as they arrive, in the connection's callback: no task
        wakes up per reply (issue 16)."""
        self.connection.listen(self._on_replies, self._on_lost)
        self.connection.read_aside()

    async def send(
        self,
        buffer: bytes,
        messages: int,
        replies_each: int = 1,
        watch: BatchWatch | None = None,
        tag: object = None,
        extra: int = 0,
    ) -> None:
        """Write ``buffer``: ``messages`` messages of ``replies_each`` replies each (a
        list sink with a maxlen answers RPUSH and LTRIM); with ``watch``, ``buffer``
        ends with its suffix, and its replies go to it (with ``tag``) when all are in;
        ``extra``: commands that are no message (a standby's watermark, issue 15)."""
        count = replies_owed(messages, replies_each, extra, watch)
        while self.in_flight and self.in_flight + count > self.max_in_flight:
            self._raise_if_failed()
            self._progress.clear()
            self.connection.hurry()
            await self._progress.wait()
        self._raise_if_failed()
        if self.gate is not None and not self.gate.may_write():
            await self.gate.wait()
            self._raise_if_failed()
        self.put(buffer, count, messages, watch, tag)
        if self.connection.draining:  # the socket took everything, mostly: no await
            await self.connection.drain()

    def ready(self, count: int) -> bool:
        """Whether ``count`` more replies' worth of commands may be written now, with no
        wait: room in flight, the gate open, the socket taking what it is given. The
        pub/sub loop's fast lane asks before writing from the event loop's callback."""
        in_flight = self.in_flight
        return (
            self._failure is None
            and not (in_flight and in_flight + count > self.max_in_flight)
            and (self.gate is None or self.gate.may_write())
            and not self.connection.draining
        )

    def put(
        self,
        buffer: bytes,
        count: int,
        messages: int,
        watch: BatchWatch | None = None,
        tag: object = None,
    ) -> None:
        """Write ``buffer`` (``count`` replies owed for ``messages`` messages) now: the
        caller waited for room and the gate (``send``), or asked ``ready``."""
        self.connection.write(buffer)
        if not self.in_flight:
            self.connection.owed(True)
        self.sent += count
        if watch is None:
            self._batches.append(_Batch(time.monotonic(), count, messages))
        else:
            self._batches.append(_Batch(time.monotonic(), count, messages, watch, tag, []))
        # After the batch is on record: its replies may come in the read.
        if self.in_flight < ASIDE_BELOW:
            self.connection.sent()
        else:
            self.connection.hurry()

    async def flush(self) -> None:
        while self.in_flight:
            self._raise_if_failed()
            self._progress.clear()
            self.connection.hurry()
            await self._progress.wait()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _on_replies(self, replies: list[Any]) -> None:
        """The connection's callback: replies in the order of the commands sent."""
        self.confirmed += len(replies)
        if not self.in_flight:
            self.connection.owed(False)
        refused = [reply for reply in replies if isinstance(reply, ReplyError)]
        if refused:
            self.refused += len(refused)
            self.last_refusal = str(refused[-1])
            self.metrics.refusal(len(refused), self.last_refusal, lost=True)
            if len(refused) < len(replies):
                self.metrics.took(_refused_after_last_taken(replies))
        elif self.metrics.refused_since_taken:
            self.metrics.took(0)
        self._answered(replies)
        self._progress.set()

    def _on_lost(self, lost: ConnectionLost) -> None:
        self._failure = lost
        self._progress.set()

    def _answered(self, replies: list[Any]) -> None:
        now = time.monotonic()
        left, start = len(replies), 0
        while left and self._batches:
            batch = self._batches[0]
            taken = min(left, batch.owed)
            if batch.replies is not None:
                batch.replies.extend(replies[start : start + taken])
            batch.owed -= taken
            left -= taken
            start += taken
            if not batch.owed:
                self._batches.popleft()
                self.metrics.answered(batch.messages, now - batch.sent_at)
                if batch.watch is not None and batch.replies is not None:
                    batch.watch.answered(batch.tag, batch.replies)

    async def close(self, *, abort: bool = False) -> None:
        """Stop reading replies and close; ``abort`` drops unsent bytes (see resp).
        Answers already on their way are awaited briefly (``ANSWERS_AT_CLOSE``) while
        the connection is healthy: a gap on the source's side leaves the sink fine, and
        its last write, taken, was left uncounted (a route's loop guard stopping a task
        right after its first write, with replies read aside: a full suite run)."""
        if self._failure is None and self.in_flight:
            with contextlib.suppress(ConnectionLost, TimeoutError):
                async with asyncio.timeout(ANSWERS_AT_CLOSE):
                    await self.flush()
        # Batches never answered are told so: with ``wait``, the ones held up behind
        # WAITs when a sink failover reset the connection were 8,700 messages read and
        # gone without a count (issue 14's drill with every replica asked).
        # Without a watch, they are counted here (a chaos campaign: 603 replayed into a
        # master frozen a moment later, neither forwarded nor lost). Told once per watch,
        # with the sum: each is a warning, and a hundred batches may be in flight.
        unanswered: dict[BatchWatch | None, int] = {}
        for batch in self._batches:
            unanswered[batch.watch] = unanswered.get(batch.watch, 0) + batch.messages
        for watch, messages in unanswered.items():
            if not messages:
                continue  # a standby's watermark alone: no message
            if watch is not None:
                watch.unanswered(messages)
            else:
                self.metrics.unanswered(messages)
        self._batches.clear()
        await self.connection.close(abort=abort)


def replies_owed(
    messages: int, replies_each: int = 1, extra: int = 0, watch: BatchWatch | None = None
) -> int:
    """The one place replies are counted from messages: ``replies_each`` per message,
    ``extra`` commands that are no message, and what a watch's suffix adds."""
    count = messages * replies_each + extra
    if watch is not None:
        count += watch.extra_replies
    return count


def _refused_after_last_taken(replies: list[object]) -> int:
    """How many error replies follow the last reply that is not one."""
    after = 0
    for reply in replies:
        after = after + 1 if isinstance(reply, ReplyError) else 0
    return after
