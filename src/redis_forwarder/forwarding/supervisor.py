"""One task (a route on a shard) kept forwarding through failures: :class:`Task`.

Contract: ``start`` runs it; it never ends on its own. Each loss of the source or the
sink connection opens a *gap* (start, reason), asks the node to refresh its topology,
and reconnects with backoff (50 ms doubling to 2 s, jittered) to wherever the placement
says the servers are *now*; the gap closes when forwarding resumes. ``rehome`` ends
the current connections at once (the watcher saw a master move). ``stop`` is
immediate and final: from its first line the task opens no connection and reads,
subscribes or claims nothing more; a graceful stop finishes the batch in hand and
flushes it, an ungraceful one resets every connection at once.

Every state change goes through ``_enter``, which logs it, counts it and timestamps it
(kazoo's ``SetPartitioner._set_state`` is the model), so the state is never spread
over flags.

An owner of a pub/sub task with a standby that loses its subscription yields the task
to that standby (``yielding``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from redis_forwarder.forwarding.connections import CONNECT_TIMEOUT, TaskConnections
from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.placement import Placement
from redis_forwarder.forwarding.pubsub import PubSubLoop, SlotMoved
from redis_forwarder.forwarding.spec import TaskSpec
from redis_forwarder.forwarding.states import FINAL, Gap, TaskState
from redis_forwarder.forwarding.streams import StreamLoop
from redis_forwarder.forwarding.wiring import Attempt, Wiring
from redis_forwarder.forwarding.yielding import CLOSED_WAIT, YIELD_PAUSE, YIELD_WAIT, Yield
from redis_forwarder.gate import BoundGate
from redis_forwarder.model import Address
from redis_forwarder.observe import Metrics
from redis_forwarder.resp import ConnectionLost
from redis_forwarder.retry import Backoff
from redis_forwarder.standby.ring import Ring

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0  # a graceful stop's bound: past it, the task's connections are reset
# Said at DEBUG when they come without a reason: "forwarding from" and the gap lines
# already say them at INFO and WARNING.
_QUIET = frozenset({TaskState.CONNECTING, TaskState.FORWARDING, TaskState.STOPPED})


class Task:
    def __init__(
        self,
        spec: TaskSpec,
        placement: Placement,
        metrics: Metrics,
        standby: Ring | None = None,
        rings: Callable[[], Ring] | None = None,
        wake_node: Callable[[], None] | None = None,
        covered: Callable[[], bool] = lambda: True,
        yield_wait: float = YIELD_WAIT,
    ) -> None:
        """``standby``: the task starts as a standby (issue 15), keeping what it hears in
        this ring, writing nothing, until ``promote``. ``rings``: a fleet's, so that an
        owner with a standby can yield (a ring of its own); ``wake_node``: its report
        of the yield goes out at once; ``covered``: whether a standby is named for it
        now (an owner with none has nobody to yield to); ``yield_wait``: for it."""
        self.spec = spec
        self.route = spec.route
        self.shard = spec.shard
        self.epoch = spec.epoch
        self.name = spec.name
        self.placement = placement
        self.metrics = TaskMetrics(metrics, spec.route.name, spec.shard)
        self.metrics.track_gap(self.gap_open_seconds)
        self.connections = TaskConnections(self.name)
        self.state = TaskState.CONNECTING
        self.state_since = time.monotonic()
        self.gaps: list[Gap] = []
        self.source_address: Address | None = None  # where it reads now
        self.subscribed_sharded: list[str] = []  # what the current connection serves
        self._graceful = False
        self._rehome_reason = ""
        # Sources that failed since the task last forwarded: the locator passes them over
        # (a frozen server would cost a connect timeout on every retry).
        self._avoid: set[Address] = set()
        self._loops: list[PubSubLoop] | list[StreamLoop] = []
        self._attempt: asyncio.Task[None] | None = None
        self._source_failed: Address | None = None  # the source of the attempt that ended
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.listening = standby is not None  # a standby, not promoted yet
        self._rings = rings if spec.watermarks and not spec.reads_streams else None
        self._wake_node = wake_node
        self._covered, self._yield_wait = covered, yield_wait
        self.yielding: Yield | None = None
        self._yield_timer: asyncio.TimerHandle | None = None
        self._took_back_at = float("-inf")  # monotonic
        self._wiring = Wiring(
            spec, placement, self.connections, self.metrics, self._is_graceful, standby
        )
        if standby is not None:
            self.metrics.ring.track(standby, time.time)

    # -- what the node reads
    @property
    def running(self) -> bool:
        return self.state is TaskState.FORWARDING

    @property
    def refused_by_sink(self) -> int:
        """Writes the sink refused since it last took one (0: it takes them)."""
        return self.metrics.refused_since_taken

    @property
    def forwarding(self) -> bool:
        """Running, and the sink takes writes: a task whose sink refused every write
        since it last took one is connected but forwards nothing (states.py)."""
        return self.running and not self.refused_by_sink

    @property
    def in_gap(self) -> bool:
        return bool(self.gaps) and self.gaps[-1].open

    def gap_open_seconds(self) -> float:
        """How long the open gap has lasted (``forwarder_gap_open_seconds``): 0 for a
        standby (it forwards nothing: a hole in its ring, not a gap) and once stopping
        (the task is someone else's, or nobody's: the fleet's alert sees that)."""
        if self.listening or self.state in FINAL or not self.in_gap:
            return 0.0
        return max(0.0, time.time() - self.gaps[-1].start)

    @property
    def progress_at(self) -> float:
        """When the task's loop last turned (monotonic): reading or writing returns
        within a heartbeat, a sink timeout or a connect timeout, so a loop that stops
        turning for longer is wedged."""
        return min((loop.beat_at for loop in self._loops), default=time.monotonic())

    def standby_status(self) -> dict[str, object]:
        """A standby's state, where it listens, and its ring (depth, bytes, fallen off)."""
        ring = self._wiring.ring
        return {
            "state": str(self.state),
            "source": str(self.source_address) if self.source_address else None,
            "ring_seconds": round(ring.depth(time.time()), 2) if ring else 0.0,
            "ring_messages": ring.messages if ring else 0,
            "ring_bytes": ring.bytes if ring else 0,
            "evicted": ring.evicted if ring else 0,
        }

    def wedged_after(self) -> float:
        route = self.route
        return 3 * route.heartbeat + route.sink_timeout + 2 * CONNECT_TIMEOUT + 1

    # -- what the node does
    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=self.name)

    def promote(self, epoch: int, own_ring: bool = False) -> None:
        """A standby became the owner, under ``epoch``: its loop takes over at its next
        turn (replaying its ring from the old owner's watermark, then live on the same
        subscription); if its subscription is down, the next attempt does.
        ``own_ring``: a yielding owner takes its task back (``_take_back``)."""
        if not self.listening or self.state in FINAL:
            return
        self.listening = False
        self.epoch = epoch
        self.spec = replace(self.spec, epoch=epoch)
        if isinstance(self.placement.gate, BoundGate) and not own_ring:
            self.placement.gate.rebind()
        self._wiring.promote(self.spec, own_ring)
        if self._arm_takeover() and self.state in (TaskState.STANDBY, TaskState.YIELDING):
            how = "took it back" if own_ring else "took over"
            self._enter(TaskState.FORWARDING, f"{how}, epoch {epoch}")
            return
        self._wake.set()  # waiting to retry: retry now, as the owner

    # -- yielding to the standby
    def _may_yield(self, previous: TaskState, lost: ConnectionLost | None) -> bool:
        """Whether the attempt that ended lost a subscription a standby heard: an
        owner's, that forwarded, cut off on the source's side (not a re-home, a stop, a
        sharded slot that moved: every subscriber loses those alike), with a standby
        named; not a promoted standby whose ring is still to be replayed."""
        return (
            self._rings is not None
            and not self.listening
            and previous is TaskState.FORWARDING
            and self._wiring.ring is None
            and self.state not in FINAL
            and lost is not None
            and lost.address == str(self.source_address)
            and not isinstance(lost, SlotMoved)
            and time.monotonic() - self._took_back_at > YIELD_PAUSE
            and self._covered()
        )

    def _shares(self, lost: ConnectionLost) -> bool:
        """Whether our standby listens on the server that fell silent for us: then the
        silence may be the server's own, the standby's too (``Control.confirmed``)."""
        locate = self.placement.locate_standby
        try:
            return locate is None or str(locate(frozenset()).address) == lost.address
        except ConnectionLost:  # its shard left the topology: it shares that
            return True

    def _yield(self, reason: str, silent: bool) -> None:
        """Write nothing more (the last watermark stays where writing stopped), listen
        into a ring of our own, and ask for the standby (the report, at once)."""
        assert self._rings is not None
        wait = self._yield_wait if silent else CLOSED_WAIT
        self.yielding = Yield(time.time(), reason, wait, silent)
        self.listening = True
        self._wiring.demote(self._rings())
        self.metrics.yielded()
        log.warning(
            "%s lost its subscription (%s): yielding to its standby, which heard what "
            "this node missed; taken back in %.0fs if it does not take over",
            self.name, reason, wait,
        )  # fmt: skip
        self._yield_timer = asyncio.get_running_loop().call_later(wait, self._take_back)
        if self._wake_node is not None:
            self._wake_node()

    def _take_back(self) -> None:
        """Nobody took the task over: forward again, first what our own ring heard
        since it resubscribed; the span before it is the gap."""
        self._yield_timer = None
        if self.yielding is None or self.state in FINAL:
            return
        if not self.of_this_session:
            # Held through a lost session: only the node may open its gate again (a
            # task taking itself back would write under an epoch ZooKeeper may have
            # given away). Listening on costs nothing; ask again later.
            self._yield_timer = asyncio.get_running_loop().call_later(
                self.yielding.wait, self._take_back
            )
            return
        yielded, self.yielding = self.yielding, None
        self._took_back_at = time.monotonic()
        log.warning(
            "%s: no standby took over within %.0fs; taking it back", self.name, yielded.wait
        )
        # The gap: from the loss to the last resubscription (its own ring holds the
        # rest); still open if it is not subscribed now.
        self._open_gap(yielded.reason, yielded.since)
        if yielded.heard_at is not None:
            self._close_gap(yielded.heard_at)
        self.promote(self.epoch, own_ring=True)
        if self._wake_node is not None:
            self._wake_node()

    @property
    def of_this_session(self) -> bool:
        """Whether its gate is the node's session's (it may write once ZooKeeper lets
        it); not for a task held through a lost session until ``resume``."""
        gate = self.placement.gate
        return not isinstance(gate, BoundGate) or gate.generation == gate.gate.generation

    def resume(self) -> None:
        """Held through a session the node gave up (issue 17) and owned again under the
        same epoch, so by the same ZooKeeper session all along (the owner znode never
        went): write under the node's session now, with nothing lost. Its loop waited
        at the gate meanwhile, which is no wedge."""
        if isinstance(self.placement.gate, BoundGate):
            self.placement.gate.rebind()
        now = time.monotonic()
        for loop in self._loops:
            loop.beat_at = max(loop.beat_at, now)

    def _arm_takeover(self) -> bool:
        """Have a promoted task's listening loop take over at its next turn (now: it is
        woken). Called at the promotion and again when an attempt that began listening
        starts to forward: a promotion can land while the attempt connects."""
        armed = False
        for loop in self._loops:
            if isinstance(loop, PubSubLoop) and loop.sink is None and loop.take_over is None:
                loop.take_over = self._wiring.take_over
                loop.wake()
                armed = True
        return armed

    def rehome(self, reason: str) -> None:
        """Drop the current connections and reconnect where the masters are now; if the
        task is waiting to retry, retry at once."""
        if self.state in FINAL:
            return
        if self.state in (
            TaskState.FORWARDING,
            TaskState.CONNECTING,
            TaskState.STANDBY,
            TaskState.YIELDING,
        ):
            self._rehome_reason = reason
            self._enter(TaskState.REHOMING, reason)
            self.connections.clear()  # a read or write in progress fails at once
            if self._attempt is not None:
                self._attempt.cancel()  # and a wait that is not on a connection ends too
        self._wake.set()

    async def stop(self, graceful: bool, timeout: float = STOP_TIMEOUT) -> None:
        """Stop for good. ``graceful`` (a hand-off): read nothing more, finish and flush
        the batch in hand, then close; otherwise (ownership gone) reset every connection
        now. Returns when the task has ended; past ``timeout`` it is reset and ended."""
        if self.state is TaskState.STOPPED:
            return
        # Only a task that forwards has a batch in hand to finish: one still connecting
        # would subscribe or claim after the stop began.
        graceful = graceful and self.state is TaskState.FORWARDING
        self._graceful = graceful
        self._enter(TaskState.STOPPING, "graceful hand-off" if graceful else "at once")
        if self._yield_timer is not None:
            self._yield_timer.cancel()
        if self.yielding is not None:
            log.info("%s: stopped while yielding to its standby", self.name)
        if self._wiring.ring is not None:  # its ring goes with it: so do its gauges
            self.metrics.ring.track(None, time.time)
        self.connections.stop()  # nothing opens from here on
        if graceful:
            for loop in self._loops:
                loop.stop_reading()
        else:
            self.connections.abort_all()
            if self._attempt is not None:
                self._attempt.cancel()
        self._wake.set()
        if self._runner is None:
            self._enter(TaskState.STOPPED, "never started")
            return
        done, _ = await asyncio.wait({self._runner}, timeout=timeout)
        if not done:
            log.error("%s did not stop within %.1fs; resetting its connections", self.name, timeout)
            self.connections.abort_all()
            self._runner.cancel()
            await asyncio.wait({self._runner}, timeout=CONNECT_TIMEOUT)

    # -- the supervisor's loop
    def _is_graceful(self) -> bool:
        return self._graceful and self.state is TaskState.STOPPING

    async def _run(self) -> None:
        backoff = Backoff(initial=0.05, cap=2.0)
        try:
            while self.state not in FINAL:
                if self.state is not TaskState.REHOMING:
                    self._enter(TaskState.CONNECTING)
                # Cleared before the attempt, not before the back-off: a rehome or a
                # stop while the attempt ends must still cut the back-off short.
                self._wake.clear()
                reason, lost, was = await self._one_attempt()
                self.connections.clear()
                if self.state in FINAL:
                    break
                if self.state is TaskState.REHOMING:
                    reason, self._rehome_reason = self._rehome_reason or reason, ""
                    backoff.reset()
                    self._avoid.clear()  # the topology moved: its first choice again
                elif self._source_failed:
                    self._avoid.add(self._source_failed)
                if self.yielding is not None:
                    self.yielding.heard_at = None  # a hole in its own ring: the gap grows
                if lost is not None and self._may_yield(was, lost):
                    self._yield(reason, silent=not lost.by_server and self._shares(lost))
                    backoff.reset()
                elif not self.listening:  # a standby forwards nothing: no gap (a hole)
                    self._open_gap(reason)
                self.placement.on_lost(f"{self.name}: {reason}")
                if self.state is TaskState.REHOMING:
                    self._enter(TaskState.CONNECTING, reason)
                    continue
                self._enter(TaskState.BACKING_OFF, reason)
                await self._back_off(backoff.next_delay())
        except Exception:  # a bug in the supervisor itself: the node starts it afresh
            log.exception("%s: its supervisor failed", self.name)
        finally:
            self._loops = []
            self.connections.abort_all()
            self._enter(TaskState.STOPPED)

    async def _back_off(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _one_attempt(self) -> tuple[str, ConnectionLost | None, TaskState]:
        """Run one attempt to its end; return why it ended, the lost connection if
        that was it, and the state it ended in. Awaited with asyncio.wait, so the
        attempt's own cancellation (a rehome, a stop) never looks like ours."""
        self._attempt = asyncio.create_task(self._forward(), name=f"{self.name} attempt")
        try:
            await asyncio.wait({self._attempt})
        finally:
            if not self._attempt.done():  # we are cancelled: so is the attempt
                self._attempt.cancel()
        attempt, self._attempt, was = self._attempt, None, self.state
        self._source_failed = self.source_address
        if attempt.cancelled():
            return self._rehome_reason or "cancelled", None, was
        error = attempt.exception()
        if error is None:
            return "the loop ended", None, was
        if isinstance(error, ConnectionLost):
            if error.address != str(self.source_address):
                self._source_failed = None  # the sink failed: the source may stay
            reason = (
                error.reason
                if error.address in error.reason
                else f"{error.address}: {error.reason}"
            )
            return reason, error, was
        # Not a lost connection: garbage on the wire, a bug. Say so loudly, with the
        # traceback, count it as a gap, and start over with fresh connections.
        log.error("%s failed unexpectedly; reconnecting", self.name, exc_info=error)
        return f"unexpected {type(error).__name__}: {error}", None, was

    async def _forward(self) -> None:
        listening = self.listening
        locate = self.placement.locate_source
        # A yielding owner listens where it read: its own ring is its own view.
        if listening and self.yielding is None and self.placement.locate_standby is not None:
            locate = self.placement.locate_standby
        source = locate(frozenset(self._avoid))
        self.source_address = source.address  # before connecting: a failure names it
        async with contextlib.AsyncExitStack() as stack:
            attempt = await self._wiring.attempt(source, stack)
            self._began(attempt)
            if self.state is not TaskState.CONNECTING:
                return  # stopped or re-homed while connecting: read nothing
            self._avoid.clear()
            if listening and self.listening:
                if self.yielding is not None:
                    self.yielding.heard_at = self.yielding.heard_at or time.time()
                    self._enter(TaskState.YIELDING)
                else:
                    self._enter(TaskState.STANDBY)
                    log.info("%s standing by on %s", self.name, attempt.source)
                await _first_failure([loop.run() for loop in attempt.loops])
                return
            self._arm_takeover()  # promoted while this attempt connected as a standby
            self._close_gap()
            self._enter(TaskState.FORWARDING)
            log.info("%s forwarding from %s to %s", self.name, attempt.source, attempt.sink)
            await _first_failure([loop.run() for loop in attempt.loops])

    def _began(self, attempt: Attempt) -> None:
        self.metrics.attempt()
        self._loops = attempt.loops
        self.subscribed_sharded = attempt.subscribed_sharded

    # -- states and gaps
    def _enter(self, state: TaskState, reason: str = "") -> None:
        """The one way the state changes: logged, counted, timestamped."""
        if state is self.state:
            return
        previous, self.state = self.state, state
        self.state_since = time.monotonic()
        self.metrics.transition(state)
        self.metrics.forwarding(state is TaskState.FORWARDING, self.epoch)
        if state in FINAL:
            self.metrics.ended()
        level = logging.DEBUG if state in _QUIET and not reason else logging.INFO
        log.log(
            level, "%s: %s -> %s%s", self.name, previous, state, f" ({reason})" if reason else ""
        )

    def _open_gap(self, reason: str, since: float | None = None) -> None:
        if self.in_gap:
            return
        log.warning("%s interrupted: %s", self.name, reason)
        self.gaps.append(Gap(time.time() if since is None else since, reason))
        self.metrics.gap_opened()

    def _close_gap(self, at: float | None = None) -> None:
        if self.in_gap:
            gap = self.gaps[-1]
            gap.end = time.time() if at is None else at
            self.metrics.gap_closed(gap.end - gap.start)
            log.warning("%s resumed after %.3fs (%s)", self.name, gap.end - gap.start, gap.reason)


async def _first_failure(loops: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``loops`` together until one ends; end the others and raise what ended it
    (a stream task's slot groups: one loop's loss is the task's gap)."""
    running = [asyncio.ensure_future(loop) for loop in loops]
    try:
        # FIRST_EXCEPTION: a loop that returns was told to stop reading; the others
        # finish their batch too (a graceful stop), they are not cut short.
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
        for finished in done:
            finished.result()  # raises the loop's error
    finally:
        for loop in running:
            loop.cancel()
        await asyncio.wait(running)
