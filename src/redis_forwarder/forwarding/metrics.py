"""Every count of one task in one place: :class:`TaskMetrics`.

The loops, the writers, the overflow buffer and the supervisor report here, and only
here; each event is counted once, at the one place where it happens, with the meaning
written next to it. ``status``, ``/metrics`` and the node's status line all read these.
(Before: five callbacks threaded through four constructors, and "received" counted
three times in two different ways, issue 13.)

The Prometheus children of the task's labels are resolved once: ``labels()`` is a
dictionary lookup under a lock. The counts made once per batch are plain numbers read
when scraped (``hot_metrics``, issue 16).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis_forwarder.observe import Metrics
from redis_forwarder.standby.metrics import RingGauges
from redis_forwarder.standby.ring import Ring

log = logging.getLogger(__name__)
LOG_EVERY = 10.0  # seconds between two warnings of one kind for one task
DROP_LOG_EVERY = 10_000  # the drop-oldest warning: at the first drop, then per so many


class TaskMetrics:
    """One task's counts. Attributes (read by status and tests):

    - ``received``: messages (pub/sub) or entries (streams) taken from the source,
      oversized ones included; a stream entry claimed again counts again.
    - ``forwarded``: messages or entries the sink answered (a refusal is an answer;
      ``refused`` counts those).
    - ``refused``: sink writes Redis refused. Pub/sub: those messages are lost (at most
      once). Streams: the entries stay pending and are tried again.
    - ``refused_since_taken``: writes refused since the sink last took one; above 0,
      the task is connected but forwards nothing (``sink_refusing``), and says so in
      the status line, /readyz and ``forwarder_sink_refusing``.
    - ``dropped``: messages the drop-oldest overflow policy dropped.
    - ``oversized``: messages over ``max_message_bytes``, dead-lettered or dropped.
    - ``given_up``: stream entries refused for good (dead-lettered or left pending).
    - ``unfit``: stream entries a list or channel sink cannot carry as the route asks
      (dead-lettered, or left pending: counted each time they are claimed again).
    - ``replays``: stream entries the sink already held (a copied id: a duplicate
      avoided); ``late``: entries claimed after newer ones were copied, written with a
      new id (late, not lost).
    - ``unreplicated``: stream entries the sink took but fewer replicas than the
      route's ``wait`` asks acknowledged in time: not acknowledged at the source (they
      stay pending and are written again), not counted as forwarded.
    - ``unconfirmed``: pub/sub messages written in a batch that fewer replicas than
      the route's ``wait`` asks confirmed in time: at risk in a sink failover (pub/sub
      keeps nothing to retry; still counted as forwarded).
    - ``lost_to_sink_failover_count``: of the last ids a stream sink returned on one
      master (entries acknowledged, or pub/sub messages written), those its successor
      lacked (a lower bound: the last 1000 per sink key are looked for).
    - ``batches``, ``lag`` (seconds: the last batch's latency, see the histogram's
      help), ``last_message_at`` (wall clock of the last batch read).
    """

    def __init__(self, metrics: Metrics, route: str, shard: str) -> None:
        self.name = f"{route}@{shard}"
        self.registry = metrics
        labels = {"route": route, "shard": shard}
        self._labels = labels
        self.received = 0
        self.forwarded = 0
        # A bridge's own counts (issue 20), for status: what it did not forward and why.
        self.bridged = dict.fromkeys(("echoes", "unheard", "origin_skipped", "hop_drops"), 0)
        self.refused = 0
        self.refused_since_taken = 0
        self.dropped = 0
        self.oversized = 0
        self.given_up = 0
        self.unfit = 0
        self.replays = 0
        self.late = 0
        self.unreplicated = 0
        self.unconfirmed_count = 0
        self._unconfirmed_since = -1  # the count when this episode began; -1: none
        self.lost_to_sink_failover_count = 0
        self.unanswered_count = 0
        self.batches = 0
        self.lag = 0.0
        self.last_message_at = 0.0
        self._hot = metrics.hot.of(route, shard)
        self._refused = metrics.refused.labels(**labels)
        self._dropped = metrics.dropped.labels(**labels)
        # Every counter an alert watches exists from the start, at 0: a series born at
        # its first event starts at 1, and increase() never counts a series' first
        # sample (an output-buffer cut, a dead letter, a loss: each would go unalerted
        # the first time, which is often the only time).
        metrics.output_buffer_cuts.labels(**labels)
        metrics.sink_failover_lost.labels(**labels)
        metrics.unanswered.labels(**labels)
        metrics.origin_skipped.labels(**labels)
        metrics.hop_limit.labels(**labels)
        metrics.echoes_suppressed.labels(**labels)
        metrics.echoes_unheard.labels(**labels)
        for action in ("dead-lettered", "dropped"):
            metrics.oversize.labels(**labels, action=action)
        for action in ("dead-lettered", "left-pending"):
            metrics.refused_for_good.labels(**labels, action=action)
            metrics.unfit.labels(**labels, action=action)
        self._ended = False
        self._in_flight = metrics.in_flight.labels(**labels)
        # Read when scraped: nothing per batch. (The task's replacement re-points it.)
        metrics.sink_refusing.labels(**labels).set_function(
            lambda: int(self.sink_refusing and not self._ended)
        )
        self._logged_at: dict[str, float] = {}
        self._backlogs: dict[int, tuple[int, int]] = {}  # a loop's last lag and pending
        self._refused_logged = 0
        self.ring = RingGauges(metrics.standby, route, shard)
        self.watermarks = 0
        self._watermarks = metrics.standby.watermarks.labels(**labels)

    @classmethod
    def alone(cls, route: str = "bench", shard: str = "bench") -> TaskMetrics:
        """Counts in a registry of their own (a loop run outside a node: bench, tests)."""
        return cls(Metrics(), route, shard)

    # -- the data path: once per batch, never per message
    def batch(self, read: int, written: int) -> None:
        """The loop took ``read`` messages or entries from the source and hands
        ``written`` of them to the sink as one batch (the rest were set aside). One
        call per batch: this runs on every turn of a busy loop."""
        self.received += read
        self._hot.batch(read, written)
        self.last_message_at = time.time()
        if written:
            self.batches += 1

    def answered(self, count: int, seconds: float) -> None:
        """The sink answered ``count`` messages, ``seconds`` after they were sent (pub/sub)
        or after the source added them (streams)."""
        self.forwarded += count
        self.lag = seconds
        self._hot.answered(count, seconds)

    def refusal(self, count: int, reason: str, *, lost: bool) -> None:
        """The sink refused ``count`` writes, the last for ``reason``; ``lost``: those
        messages are gone (pub/sub), else they are tried again (stream entries stay
        pending). Said at once (a line per ``LOG_EVERY`` at most, with how many since
        the last line), not only when the task ends."""
        self.refused += count
        self.refused_since_taken += count
        self._refused.inc(count)
        if self._due("refused"):
            fate = "lost; pub/sub is at most once" if lost else "pending, tried again"
            log.warning(
                "%s: the sink refused %d writes (%s), last: %s", self.name,
                self.refused - self._refused_logged, fate, reason,
            )  # fmt: skip
            self._refused_logged = self.refused

    def took(self, refused_after: int) -> None:
        """The sink took a write, then refused ``refused_after`` more (in reply order).
        Told by whoever reads the replies in order: counting it from answers per batch
        took a second batch answered in the same read for a write taken (flaky)."""
        self.refused_since_taken = refused_after

    @property
    def sink_refusing(self) -> bool:
        """The sink refused every write it answered since it last took one (or ever)."""
        return self.refused_since_taken > 0

    def drop(self, count: int) -> None:
        """The drop-oldest policy dropped ``count`` messages (the sink is slower)."""
        before, self.dropped = self.dropped, self.dropped + count
        self._dropped.inc(count)
        if before == 0 or before // DROP_LOG_EVERY != self.dropped // DROP_LOG_EVERY:
            log.warning(
                "%s: the sink is slower than the source; %d messages dropped so far "
                "(overflow = drop-oldest)", self.name, self.dropped,
            )  # fmt: skip

    def oversize(self, count: int, dead_lettered: bool, limit: int) -> None:
        """``count`` messages over ``limit`` bytes left the batch."""
        self.oversized += count
        action = "dead-lettered" if dead_lettered else "dropped"
        self.registry.oversize.labels(**self._labels, action=action).inc(count)
        if self._due("oversize"):
            log.warning(
                "%s: %d messages over max_message_bytes (%d) so far, the last %s",
                self.name, self.oversized, limit, action,
            )  # fmt: skip

    def give_up(self, count: int, dead_lettered: bool) -> None:
        """``count`` stream entries refused for good (``refusals.GIVE_UP_AFTER``)."""
        self.given_up += count
        action = "dead-lettered" if dead_lettered else "left-pending"
        self.registry.refused_for_good.labels(**self._labels, action=action).inc(count)

    def unfit_entries(self, count: int, dead_lettered: bool, reason: str) -> None:
        """``count`` stream entries the sink command cannot encode (``EntryUnfit``)."""
        self.unfit += count
        action = "dead-lettered" if dead_lettered else "left-pending"
        self.registry.unfit.labels(**self._labels, action=action).inc(count)
        if self._due(f"unfit {action}"):
            where = (
                "went to the dead-letter stream"
                if dead_lettered
                else "stay pending (set dead_letter on the route to set them aside)"
            )
            log.warning(
                "%s: %d stream entries cannot be sent as the route asks (%d so far): %s; "
                "they %s", self.name, count, self.unfit, reason, where,
            )  # fmt: skip

    def settled(self, replays: int, late: int) -> None:
        """Stream entries refused as "behind the sink's last id", settled: ``replays``
        the sink held already, ``late`` written with a new id."""
        self.replays += replays
        self.late += late
        if replays:
            self.registry.replays.labels(**self._labels).inc(replays)
        if late:
            self.registry.late.labels(**self._labels).inc(late)

    def unreplicated_entries(self, count: int, replicas_acked: object) -> None:
        """``count`` stream entries written but on fewer replicas than the route's
        ``wait`` asks (WAIT answered ``replicas_acked``): left pending, retried."""
        self.unreplicated += count
        self.registry.unreplicated.labels(**self._labels).inc(count)
        if self._due("unreplicated"):
            log.warning(
                "%s: %d stream entries (%d so far) not on enough replicas in time (WAIT "
                "answered %s); they stay pending and are written again",
                self.name, count, self.unreplicated, replicas_acked,
            )  # fmt: skip

    def unconfirmed(self, count: int, replicas_acked: object) -> None:
        """A pub/sub batch of ``count`` messages written, but WAIT answered
        ``replicas_acked``: fewer replicas than ``wait`` asks have it. Logged once per
        episode (until a batch is confirmed again)."""
        self.registry.unconfirmed.labels(**self._labels).inc(count)
        if self._unconfirmed_since < 0:
            self._unconfirmed_since = self.unconfirmed_count
            log.warning(
                "%s: pub/sub batches written to the sink but not confirmed by enough "
                "replicas in time (WAIT answered %s): at risk if the sink fails over, "
                "counted until a batch is confirmed again", self.name, replicas_acked,
            )  # fmt: skip
        self.unconfirmed_count += count

    @property
    def unconfirmed_episode(self) -> bool:
        """Batches go unconfirmed now (since the last one confirmed)."""
        return self._unconfirmed_since >= 0

    def confirmed(self) -> None:
        """A pub/sub batch confirmed by enough replicas (once per batch: one test)."""
        if self._unconfirmed_since >= 0:
            log.warning(
                "%s: batches confirmed by the sink's replicas again; %d messages were "
                "not (at risk)", self.name, self.unconfirmed_count - self._unconfirmed_since,
            )  # fmt: skip
            self._unconfirmed_since = -1

    def unanswered(self, count: int) -> None:
        """Pub/sub messages written to the sink whose answer never came: the connection
        closed first (a task stopped at once, a rehome when the source failed over).
        Their fate is unknown: taken or not, and erased if the sink's master was
        demoted before a replica had them. Counted and logged: before, they were
        neither forwarded nor lost (a chaos campaign: a takeover replayed 603 messages
        into a master frozen a moment later, and not one was counted)."""
        self.unanswered_count += count
        self.registry.unanswered.labels(**self._labels).inc(count)
        log.warning(
            "%s: %d pub/sub messages written to the sink and never answered (the "
            "connection closed first): at risk if the sink failed over", self.name, count,
        )  # fmt: skip

    def lost_to_sink_failover(self, missing: int, looked_for: int, old: str, new: str) -> None:
        """The sink moved from ``old`` to ``new``: of the last ``looked_for`` ids ``old``
        returned, ``new`` lacks ``missing`` (lost: stream entries were acknowledged at
        the source too, pub/sub keeps nothing; a lower bound, only the remembered tail
        is looked for)."""
        self.lost_to_sink_failover_count += missing
        self.registry.sink_failover_lost.labels(**self._labels).inc(missing)
        if missing:
            log.error(
                "%s: the sink moved from %s to %s, which lacks %d of the last %d entries "
                "written to %s: lost to the sink's failover (to.wait with every replica "
                "prevents it, or counts it)", self.name, old, new, missing, looked_for, old,
            )  # fmt: skip
        else:
            log.info("%s: the sink moved from %s to %s, which has the last %d entries "
                     "written", self.name, old, new, looked_for)  # fmt: skip

    def track_in_flight(self, in_flight: Callable[[], int] | None) -> None:
        """Sink commands awaiting a reply, read when scraped (never stale, no cost per
        batch); ``None`` when the task has no sink connection (reads 0). (A gauge with a
        function ignores ``set``: the function is replaced, never set over.)"""
        self._in_flight.set_function(in_flight or _none_in_flight)

    # -- the supervisor
    def forwarding(self, running: bool, epoch: int) -> None:
        self.registry.running.labels(**self._labels).set(1 if running else 0)
        self.registry.epoch.labels(**self._labels).set(epoch)

    def transition(self, state: str) -> None:
        self.registry.transitions.labels(**self._labels, state=state).inc()

    # -- the standby (issue 15)
    def standby_heard(self, ring: Ring) -> None:
        """A standby kept a batch: only what fell off the ring is counted here (its
        depth is read when scraped); a standby receives, it does not forward."""
        self.ring.evicted(ring)

    def watermark(self) -> None:
        self.watermarks += 1
        self._watermarks.inc()

    def yielded(self) -> None:
        """The owner lost its subscription and yields to its standby (``supervisor``)."""
        self.registry.standby.yields.labels(**self._labels).inc()

    def output_buffer_cut(self) -> None:
        """Redis closed the subscriber, most likely past client-output-buffer-limit
        pubsub (``pubsub.output_buffer_cut``): what it held for us is lost. (The loss
        is logged by the gap it opens; this count is what an alert can rise on.)"""
        self.registry.output_buffer_cuts.labels(**self._labels).inc()

    def origin_skipped(self, count: int) -> None:
        """A bridge skipped ``count`` entries that came from its target (issue 20)."""
        self.bridged["origin_skipped"] += count
        self.registry.origin_skipped.labels(**self._labels).inc(count)

    def echoes_suppressed(self, count: int) -> None:
        """A pub/sub bridge dropped ``count`` copies the other direction had published
        where it reads (issue 20): the loop it breaks."""
        self.bridged["echoes"] += count
        self.registry.echoes_suppressed.labels(**self._labels).inc(count)

    def echoes_unheard(self, count: int) -> None:
        """``count`` copies this bridge published never came back to the other
        direction's reader within ECHO_TTL (it was not subscribed, or the write failed):
        forgotten. Until then each could have hidden one identical message."""
        self.bridged["unheard"] += count
        self.registry.echoes_unheard.labels(**self._labels).inc(count)
        if self._due("echoes unheard"):
            log.warning(
                "%s: %d copies published never came back to the other direction's "
                "reader (not subscribed meanwhile, or the write failed); forgotten",
                self.name, count,
            )  # fmt: skip

    def hop_limit(self, count: int, limit: int) -> None:
        """A bridge dropped ``count`` entries that had crossed ``limit`` bridges: a
        cycle the origins cannot see (three deployments, another fleet's config)."""
        self.bridged["hop_drops"] += count
        self.registry.hop_limit.labels(**self._labels).inc(count)
        if self._due("hop limit"):
            log.error(
                "%s: %d stream entries dropped: they had crossed %d bridges (to.max_hops), "
                "a cycle of bridges the origins do not break (three deployments, or "
                "another fleet's routes); find it in the entries' origin fields",
                self.name, count, limit,
            )  # fmt: skip

    def attempt(self) -> None:
        """A new attempt's loops replace the last one's: their backlogs go with them
        (a sum over stale loops would only grow, reconnect after reconnect)."""
        self._backlogs.clear()

    def ended(self) -> None:
        """The task stops here (it moves elsewhere, its route paused, the node leaving):
        what it says of "now" must not outlive it on this node, or an alert would fire
        for a task another node runs (a refusing sink, a backlog) until this node runs
        it again. Counters stay: they are history."""
        self._ended = True
        self._backlogs.clear()
        self.registry.stream_lag.labels(**self._labels).set(0)
        self.registry.stream_pending.labels(**self._labels).set(0)

    def stream_backlog(self, loop: int, lag: int | None, pending: int) -> None:
        """One of the task's loops measured its consumer group: entries not read yet
        (None: Redis cannot tell, after XSETID or a deleted entry; the gauge keeps its
        last value) and read but not acknowledged. A cluster task runs a loop per slot
        group: the gauges are the sums of each loop's last measure."""
        last_lag = self._backlogs.get(loop, (0, 0))[0]
        self._backlogs[loop] = (last_lag if lag is None else lag, pending)
        self.registry.stream_lag.labels(**self._labels).set(
            sum(b[0] for b in self._backlogs.values())
        )
        self.registry.stream_pending.labels(**self._labels).set(
            sum(b[1] for b in self._backlogs.values())
        )

    def track_gap(self, open_seconds: Callable[[], float]) -> None:
        """How long the current gap has lasted, read when scraped (the task's
        replacement re-points it)."""
        self.registry.gap_open.labels(**self._labels).set_function(open_seconds)

    def gap_opened(self) -> None:
        self.registry.gaps.labels(**self._labels).inc()

    def gap_closed(self, seconds: float) -> None:
        self.registry.gap_seconds.labels(**self._labels).inc(seconds)
        self.registry.reconnects.labels(**self._labels).inc()

    def _due(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self._logged_at.get(kind, float("-inf")) < LOG_EVERY:
            return False
        self._logged_at[kind] = now
        return True


def _none_in_flight() -> int:
    return 0
