"""The pub/sub loop: read what is available, encode it, write it as one pipelined
batch, repeat. The writer's bound on commands in flight is the bounded buffer: when the
sink is slower than the source, reading waits (policy ``block``) and the backlog builds
up in Redis' output buffer for this subscriber, which Redis caps
(``client-output-buffer-limit pubsub``); the loop then loses its connection and says
so.

Heartbeat: when nothing arrives for ``heartbeat`` seconds the loop sends PING on the
subscription; if the next ``heartbeat`` seconds bring neither a message nor the PONG,
the connection is declared lost (a half-open TCP connection must not hang a task).

Loop guard: a route that writes channels on the deployment it reads, where the config
check could not prove it safe or looping (an unknown {shard}, too many names), watches
for its own output: a message read on a channel it wrote means it feeds itself, so it
stops before writing that batch (issue 14: one PUBLISH became 1,390 messages in 1.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis_forwarder.forwarding.aside import Oversize
from redis_forwarder.forwarding.echoes import EchoSides
from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.refusals import TRANSIENT
from redis_forwarder.resp import ConnectionLost, RawMessage, encode
from redis_forwarder.retry import Backoff
from redis_forwarder.sink.pubsub import PubSubSink
from redis_forwarder.source.pubsub import PubSubReader
from redis_forwarder.standby.marks import Marks
from redis_forwarder.standby.ring import Ring

log = logging.getLogger(__name__)
DEFAULT_HEARTBEAT = 1.0
# A write that waits this long for the sink means the loop fell behind the source, and
# Redis started to buffer for this subscriber.
STALL = 0.05
STALL_MEMORY = 10.0  # how long a stall explains a closed subscription
OUTPUT_BUFFER_HINT = (
    "closed by the server {ago:.1f}s after the sink held the loop up for {stall:.2f}s: "
    "most likely Redis' client-output-buffer-limit for pub/sub was exceeded, and what it "
    "had buffered for this subscriber is lost; make the sink faster, raise max_in_flight, "
    'set overflow = "drop-oldest", or raise the limit on the source'
)
# A subscriber closed by the server without a slow sink: Redis 7.0 names the cause only
# in its own log. A message over the hard limit never arrives at all (Redis flags the
# client and closes it unsent), so the limit is named whenever the server closes.
CLOSED_HINT = (
    "{reason}: Redis names why only in its own log; it cuts a subscriber off past "
    "client-output-buffer-limit pubsub (a message larger than the hard limit is never "
    "sent at all: raise the limit on the source to carry it), on CLIENT KILL, on client "
    "eviction (maxmemory-clients) and at shutdown"
)
LARGE_HINT = (
    "{reason} {size:.1f} MB into one message: most likely it passed Redis' "
    "client-output-buffer-limit pubsub (said only in Redis' own log); raise the limit on "
    "the source to carry such messages"
)
LARGE_REPLY = 1 << 20  # bytes of an unfinished message that make the limit the likely cause


# The guard remembers this many names it saw written; then it starts over (a loop keeps
# writing, so it is seen again).
GUARD_MEMORY = 4096


class RouteLoop(ConnectionLost):
    """The task read its own output: it stopped forwarding rather than amplify."""


class SlotMoved(ConnectionLost):
    """Redis took a sharded channel's subscription away: its slot moved to another
    shard (every subscriber of it loses it alike: nothing for a standby to fill)."""


class LoopGuard:
    """Per batch, not per message: the batch's first and last channels are looked up
    among the names written for earlier batches' first and last messages, then those
    two names are added. A loop feeds itself without end, so its messages soon sit at
    a batch's edge (a single chain is caught at its second batch); a check of every
    message would cost every message of every route. Once tripped it stays tripped:
    the task's next attempts are refused (``wiring``), so the task waits, backing off,
    with the reason as its gap, until the route is changed and reloaded."""

    def __init__(self, route: str, template: str, render: Callable[[bytes, bytes], bytes]) -> None:
        self.route = route
        self.template = template
        self.render = render
        self.written: set[bytes] = set()
        self.tripped = ""  # why the route was stopped; empty while it forwards
        self.trips = 0

    def check(self, batch: list[tuple[bytes, bytes, bytes]], where: str) -> None:
        """Raise RouteLoop when ``batch`` holds a channel this task wrote."""
        first, last = batch[0], batch[-1]
        for channel in (first[0], last[0]):
            if channel in self.written:
                raise self._trip(channel, where)
        if len(self.written) >= GUARD_MEMORY:
            self.written.clear()
        self.written.add(self.render(first[0], first[2]))
        self.written.add(self.render(last[0], last[2]))

    def _trip(self, channel: bytes, where: str) -> RouteLoop:
        self.trips += 1
        self.tripped = (
            f"route {self.route!r} read channel {channel!r} that it wrote itself "
            f"(template {self.template!r}): it feeds its own output, forwarding stopped; "
            "change the route's template to a name it does not read, then reload"
        )
        log.error("%s: %s", where, self.tripped)
        return RouteLoop(where, self.tripped)


class PubSubLoop:
    """Forward one subscription into one sink until a connection fails, or until
    ``stop_reading`` (then it returns, having read nothing more).

    A standby's loop (issue 15) has no sink: it keeps what it reads in ``ring``. To
    take over, the task sets ``take_over``, which the loop runs at its next turn (within
    a heartbeat): it gives the loop its sink and writes what the ring holds after the
    old owner's watermark; then the same subscription goes on, live, with no seam.
    An owner with ``marks`` writes a watermark after its batches (``standby.marks``)."""

    def __init__(
        self,
        reader: PubSubReader,
        sink: PubSubSink | None,
        metrics: TaskMetrics,
        heartbeat: float = DEFAULT_HEARTBEAT,
        oversize: Oversize | None = None,
        guard: LoopGuard | None = None,
        marks: Marks | None = None,
        ring: Ring | None = None,
        echoes: EchoSides | None = None,
    ) -> None:
        self.reader = reader
        self.sink = sink
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.oversize = oversize
        self.guard = guard
        self.marks = marks
        self.ring = ring
        self.echoes = echoes
        self.take_over: Callable[[PubSubLoop], Awaitable[None]] | None = None
        self.stopping = False
        self.heartbeats = 0  # PINGs sent on an idle subscription
        self.beat_at = time.monotonic()  # the loop's last turn: a wedged loop stops beating
        self.last_stall = 0.0  # the last write that waited on the sink: how long, and when
        self.last_stall_end = float("-inf")
        self._refusals_seen = 0
        self._refusal_backoff = Backoff(initial=0.05, cap=2.0)
        self._reading = False  # the task waits for the next batch: the fast lane may run
        self.fast = 0  # batches the fast lane forwarded

    def stop_reading(self) -> None:
        """Read nothing more: the subscription is reset at once (pub/sub has nothing to
        acknowledge, so nothing is gained by waiting for a read to end); a batch being
        written is finished, then ``run`` returns."""
        self.stopping = True
        self.reader.connection.abort()

    def wake(self) -> None:
        """End a read that waits for messages (a PING: its PONG ends the read), so that
        a takeover does not wait for the next message or heartbeat. The PONG is counted
        as a heartbeat's answer, which is harmless: it is one."""
        with contextlib.suppress(ConnectionLost, RuntimeError, OSError):
            self.reader.connection.write(encode(b"PING"))  # a closed one: the loop ends anyway

    async def run(self) -> None:
        """Run until the source or the sink connection is lost (ConnectionLost), or
        until ``stop_reading``."""
        self.reader.connection.offer_to(self._fast_lane)
        try:
            await self._run()
        finally:
            self.reader.connection.offer_to(None)
        await self._hand_off()

    async def _run(self) -> None:
        awaiting_pong = False
        pongs, fast = self.reader.pongs, self.fast
        while not self.stopping:
            self.beat_at = time.monotonic()
            if self.take_over is not None:
                take_over, self.take_over = self.take_over, None
                await take_over(self)
            self._reading = True
            try:
                batch = await self.reader.messages(self.heartbeat)
            except ConnectionLost as exc:
                if self.stopping:
                    break
                raise self._explained(exc) from None
            finally:
                self._reading = False
            if self.reader.unsubscribed:
                # Redis took a sharded channel away: its slot moved to another shard.
                raise SlotMoved(self.reader.connection.name, "a sharded channel's slot moved away")
            if batch:
                awaiting_pong = False
                if self.sink is None:
                    self._listen(batch)
                else:
                    await self.forward(batch)
            elif self.fast != fast:
                # The fast lane forwarded meanwhile: the subscription lives, and no PING
                # is due (one queued behind a backlog in Redis' output buffer could take
                # over a heartbeat to come back, and end a healthy subscription: review).
                fast, awaiting_pong = self.fast, False
            elif self.reader.pongs != pongs:
                pongs, awaiting_pong = self.reader.pongs, False
            elif awaiting_pong:
                raise ConnectionLost(
                    self.reader.connection.name,
                    f"no answer to the heartbeat PING within {self.heartbeat:.1f}s",
                )
            else:
                await self.reader.ping()
                self.heartbeats += 1
                awaiting_pong = True

    def _fast_lane(self, replies: list[Any]) -> bool:
        """Offered each read's replies in the event loop's callback, while the task
        waits for its next batch: forward them at once when nothing would make them
        wait, and the task never wakes (issue 16: one wake-up of the task per message
        cost more than the message, when publishers send one at a time). Anything out
        of the ordinary declines, and the task takes the batch the ordinary way, in
        order: no sink (a standby), a takeover or a stop under way, a loop guard, a
        message over the size limit, refusals not yet acted on, a PONG or other push,
        no room in flight, a closed gate."""
        sink = self.sink
        if (
            not self._reading
            or self.stopping
            or sink is None
            or self.take_over is not None
            or self.guard is not None
            or sink.refused != self._refusals_seen
            or self.reader.early
        ):
            return False
        # Asked before the batch is built: a sink that never writes at once (a cluster,
        # a watch) must not pay for a batch built twice (issue 16: full speed into a
        # cluster spent 20% more CPU per message on it).
        if not sink.ready_now(len(replies) + 1):  # one more: room for a watermark
            return False
        batch = self.reader.only_messages(replies)
        if batch is None or (self.oversize is not None and not self.oversize.fits(batch)):
            return False
        received = len(batch)
        if self.echoes is not None:  # taken now: past every reason to decline
            batch = self._without_echoes(batch)
        self.metrics.batch(received, len(batch))
        mark = None if self.marks is None else self.marks.after(batch)
        if mark is not None:
            self.metrics.watermark()
        if batch or mark is not None:  # a bridge's batch may have been echoes only
            sink.put_now(batch, mark)
        self.fast += 1
        return True

    def _listen(self, batch: list[RawMessage]) -> None:
        """A standby: keep the batch, write nothing (of a bridge, what the owner would
        write: echoes out, the rest awaited back as if sent, ``echoes``)."""
        assert self.ring is not None
        echoes: frozenset[int] = frozenset()
        if self.echoes is not None:
            # Kept, marked: the owner may have judged two identical messages the other
            # way round, and its watermark names what it wrote (a drill: a takeover that
            # could not find it replayed by time, seconds of duplicates, some home).
            kept = {id(m) for m in self._without_echoes(batch)}
            if len(kept) != len(batch):
                echoes = frozenset(i for i, m in enumerate(batch) if id(m) not in kept)
        self.ring.add(batch, time.time(), echoes)
        self.metrics.standby_heard(self.ring)

    def _without_echoes(self, batch: list[RawMessage], record: bool = True) -> list[RawMessage]:
        """A bridge's batch without the other direction's copies; with ``record``, the
        rest is awaited back from where it is published (or would be, by a standby)."""
        assert self.echoes is not None
        kept = self.echoes.heard(batch)
        if len(kept) != len(batch):
            self.metrics.echoes_suppressed(len(batch) - len(kept))
        forgotten = self.echoes.left(kept) if record else 0
        if forgotten:
            self.metrics.echoes_unheard(forgotten)
        return kept

    async def _hand_off(self) -> None:
        """A graceful stop: the watermark of everything written, so that the next owner
        (the standby) replays nothing twice. A connection lost here only costs it
        duplicates."""
        if self.sink is None or self.marks is None:
            return
        mark = self.marks.final()
        if mark is not None:
            with contextlib.suppress(ConnectionLost):
                await self.sink.write((), mark)

    async def forward(self, batch: list[RawMessage], replay: bool = False) -> None:
        """Write ``batch``; ``replay``: a standby's ring at its takeover, recorded as
        sent when heard, and looked at for echoes once more (one heard before its
        original, ``echoes``, is dropped now if that original was recorded since)."""
        sink, received = self.sink, len(batch)
        assert sink is not None
        started = time.monotonic()
        if self.echoes is not None:
            batch = self._without_echoes(batch, record=not replay)
        if self.guard is not None:  # before writing: a looping batch is not written
            try:
                self.guard.check(batch, self.metrics.name)
            except RouteLoop:
                self.metrics.batch(received, 0)  # read and not written: the gap says why
                raise
        if self.oversize is not None:
            batch = await self.oversize.set_aside(batch)
        self.metrics.batch(received, len(batch))
        mark = None if self.marks is None else self.marks.after(batch)
        if mark is not None:
            self.metrics.watermark()
        if batch or mark is not None:  # all of it may have been set aside
            await sink.write(batch, mark)
        waited = time.monotonic() - started
        if waited >= STALL:
            self.last_stall, self.last_stall_end = waited, time.monotonic()
        sink.check()
        await self._after_refusals()

    def _explained(self, lost: ConnectionLost) -> ConnectionLost:
        stalled_ago = time.monotonic() - self.last_stall_end
        if output_buffer_cut(lost, stalled_ago):
            self.metrics.output_buffer_cut()
        return explained(lost, stalled_ago, self.last_stall)

    async def _after_refusals(self) -> None:
        """While the sink refuses for a passing reason (OOM, LOADING, BUSY, ...) wait
        before reading on, longer each time (to 2 s): what is published meanwhile waits
        in Redis' output buffer for this subscriber instead of being refused too. (The
        writer counted the refusals as they came.)"""
        assert self.sink is not None
        refused = self.sink.refused
        if refused == self._refusals_seen:
            self._refusal_backoff.reset()
            return
        self._refusals_seen = refused
        if self.sink.last_refusal.startswith(TRANSIENT):
            await asyncio.sleep(self._refusal_backoff.next_delay())


def output_buffer_cut(lost: ConnectionLost, stalled_ago: float) -> bool:
    """Whether Redis most likely closed the subscriber for its output buffer (the cases
    ``explained`` names the limit as the likely cause, not merely a possible one)."""
    return lost.by_server and (stalled_ago <= STALL_MEMORY or lost.unfinished >= LARGE_REPLY)


def explained(lost: ConnectionLost, stalled_ago: float, stall: float) -> ConnectionLost:
    """Redis closes a subscriber whose output buffer passes its limit, and says so only
    in its own log: name the limit whenever the server closed (or reset) the
    subscription, as the likely cause when the sink held the loop up ``stall`` seconds
    ending ``stalled_ago`` seconds ago, or when a large message was arriving."""
    if not lost.by_server:
        return lost
    if stalled_ago <= STALL_MEMORY:
        reason = OUTPUT_BUFFER_HINT.format(ago=stalled_ago, stall=stall)
    elif lost.unfinished >= LARGE_REPLY:
        reason = LARGE_HINT.format(reason=lost.reason, size=lost.unfinished / (1 << 20))
    else:
        reason = CLOSED_HINT.format(reason=lost.reason)
    return ConnectionLost(lost.address, reason, by_server=True, unfinished=lost.unfinished)
