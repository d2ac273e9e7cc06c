"""The standby's metrics (issue 15), in the node's registry: what its ring holds, what
fell off it, and what each takeover replayed, doubled or could not account for. Apart
from ``observe`` so that the standby's counts live with the standby."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from redis_forwarder.standby.ring import OWN_RING, Replay, Ring

log = logging.getLogger(__name__)
LABELS = ("route", "shard")


class StandbyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ring_messages = Gauge(
            "forwarder_standby_ring_messages",
            "Messages a standby holds in its ring (read when scraped)",
            LABELS,
            registry=registry,
        )
        self.ring_bytes = Gauge(
            "forwarder_standby_ring_bytes",
            "Bytes a standby's ring holds, payloads and channels plus a fixed overhead "
            "per message (read when scraped)",
            LABELS,
            registry=registry,
        )
        self.ring_seconds = Gauge(
            "forwarder_standby_ring_seconds",
            "How far back a standby's ring reaches, in seconds (read when scraped)",
            LABELS,
            registry=registry,
        )
        self.evicted = Counter(
            "forwarder_standby_evicted_messages",
            "Messages that fell off a standby's ring (older than its window, or over its "
            "byte cap): a takeover cannot replay them",
            LABELS,
            registry=registry,
        )
        self.replayed = Counter(
            "forwarder_standby_replayed_messages",
            "Messages a takeover wrote from the ring (after the old owner's watermark)",
            LABELS,
            registry=registry,
        )
        self.ambiguous = Counter(
            "forwarder_standby_ambiguous_matches",
            "Other places a takeover found the watermark in its ring (repeated identical "
            "messages): the earliest was taken, so the difference was written twice",
            LABELS,
            registry=registry,
        )
        self.unaccounted = Counter(
            "forwarder_standby_unaccounted_seconds",
            "Seconds of traffic a takeover could not account for: the ring did not reach "
            "back to the watermark, or the standby had lost its subscription meanwhile",
            LABELS,
            registry=registry,
        )
        self.takeovers = Counter(
            "forwarder_standby_takeovers",
            "Takeovers by a standby, by how the watermark was found (exact, reordered, "
            "approximate, by time, no watermark, empty ring)",
            (*LABELS, "found"),
            registry=registry,
        )
        self.yields = Counter(
            "forwarder_standby_yields",
            "Subscriptions an owner lost and yielded for to its standby, which heard what "
            'it missed: the standby took over, or (takeovers found="own ring") nobody '
            "did within 3 s and the owner took its task back",
            LABELS,
            registry=registry,
        )
        self.watermarks = Counter(
            "forwarder_watermarks",
            "Watermarks an owner wrote in its sink's deployment (at most one per 20 ms)",
            LABELS,
            registry=registry,
        )


class RingGauges:
    """One ring's gauges, read when scraped; its evictions counted as they happen."""

    def __init__(self, metrics: StandbyMetrics, route: str, shard: str) -> None:
        self.metrics = metrics
        self.labels = {"route": route, "shard": shard}
        self._evicted = 0
        # At 0 from the start, as TaskMetrics' counters: an alert's increase() never
        # counts a series' first sample.
        metrics.unaccounted.labels(**self.labels)
        metrics.evicted.labels(**self.labels)
        metrics.yields.labels(**self.labels)
        # A takeover's counts, for status: replayed from the ring, other places the
        # watermark matched (written twice), seconds it could not account for.
        self.replayed = 0
        self.ambiguous = 0
        self.unaccounted_seconds = 0.0

    def track(self, ring: Ring | None, clock: Callable[[], float]) -> None:
        labels = self.labels
        # Counted from this ring's own evictions on (a standby's old ring had its own:
        # a yield's new ring counted from them went negative, and the counter raised).
        self._evicted = 0 if ring is None else ring.evicted
        if ring is None:
            for gauge in (self.metrics.ring_messages, self.metrics.ring_bytes):
                gauge.labels(**labels).set_function(_zero)
            self.metrics.ring_seconds.labels(**labels).set_function(_zero)
            return
        self.metrics.ring_messages.labels(**labels).set_function(lambda: ring.messages)
        self.metrics.ring_bytes.labels(**labels).set_function(lambda: ring.bytes)
        self.metrics.ring_seconds.labels(**labels).set_function(lambda: ring.depth(clock()))

    def evicted(self, ring: Ring) -> None:
        """Count what fell off since the last call (once per batch: cheap)."""
        if ring.evicted != self._evicted:
            self.metrics.evicted.labels(**self.labels).inc(ring.evicted - self._evicted)
            self._evicted = ring.evicted

    def took_over(self, name: str, replay: Replay) -> None:
        self.replayed += len(replay.messages)
        labels = self.labels
        self.metrics.takeovers.labels(**labels, found=replay.found).inc()
        self.metrics.replayed.labels(**labels).inc(len(replay.messages))
        if replay.found == OWN_RING:  # its gap covers what its ring did not hear
            log.warning(
                "%s: took its task back: %d message(s) heard since it resubscribed, "
                "written from its own ring", name, len(replay.messages),
            )  # fmt: skip
            return
        self.ambiguous += replay.ambiguous
        self.unaccounted_seconds += replay.unaccounted_seconds
        if replay.ambiguous:
            self.metrics.ambiguous.labels(**labels).inc(replay.ambiguous)
        if replay.unaccounted:
            seconds = replay.unaccounted_seconds
            self.metrics.unaccounted.labels(**labels).inc(seconds)
            spans = ", ".join(
                f"{end - start:.2f}s from {start:.3f}" for start, end in replay.unaccounted
            )
            log.error(
                "%s: took over with %.2fs of traffic unaccounted for (%s): the ring did not "
                "reach back to the old owner's watermark, or the standby had lost its "
                "subscription; raise standby_window or the byte cap if the ring was too short",
                name,
                seconds,
                spans,
            )
        log.warning(
            "%s: took over from the old owner's watermark (%s): %d message(s) replayed from "
            "the ring, the first %d of them perhaps written by the old owner too%s",
            name,
            replay.found,
            len(replay.messages),
            replay.maybe_written,
            f", {replay.ambiguous} other match(es): some written twice" if replay.ambiguous else "",
        )


def _zero() -> float:
    return 0.0
