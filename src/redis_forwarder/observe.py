"""Metrics (Prometheus) and the health endpoints of a forwarder node.

``/metrics`` is the Prometheus text format; ``/healthz`` answers 200 while the node's
event loop keeps beating (a stalled loop turns it 503); ``/readyz`` answers 200 while
the node does its share: every task it owns forwards (alone: it has tasks; with
ZooKeeper: its session is connected, even with no task, as a drained node). The server
runs in a thread of its own so that a stalled event loop is still reported. It binds
to loopback unless told otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from redis_forwarder.errors import AddressInUseError, ForwarderError
from redis_forwarder.fleet_metrics import FleetGauges
from redis_forwarder.hot_metrics import HotCollector
from redis_forwarder.model import Address
from redis_forwarder.standby.metrics import StandbyMetrics

if TYPE_CHECKING:  # fleet_view imports Readiness from here
    from redis_forwarder.fleet_view import FleetView

LOOP_STALL_AFTER = 5.0


@dataclass(frozen=True)
class Readiness:
    """What /readyz answers, as the node's loop last published it. Immutable: the HTTP
    thread reads it while the loop replaces it, never a structure the loop changes."""

    ready: bool
    details: Mapping[str, object]


class Metrics:
    """The node's metrics, in a registry of its own (tests run several nodes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # received, forwarded, batches, batch size, latency: counted per batch as plain
        # numbers, read when scraped (hot_metrics.py, issue 16)
        self.hot = HotCollector()
        self.registry.register(self.hot)
        labels = ("route", "shard")
        self.dropped = Counter(
            "forwarder_dropped_messages",
            "Messages dropped by the drop-oldest overflow policy",
            labels,
            registry=self.registry,
        )
        self.refused = Counter(
            "forwarder_refused_writes",
            "Sink writes Redis refused: pub/sub messages lost; stream entries left pending "
            "and tried again",
            labels,
            registry=self.registry,
        )
        self.reconnects = Counter(
            "forwarder_reconnects",
            "Task connections re-established",
            labels,
            registry=self.registry,
        )
        self.gaps = Counter(
            "forwarder_gaps",
            "Interruptions of a task (pub/sub may lose messages inside them)",
            labels,
            registry=self.registry,
        )
        self.gap_seconds = Counter(
            "forwarder_gap_seconds", "Time tasks spent interrupted", labels, registry=self.registry
        )
        self.gap_open = Gauge(
            "forwarder_gap_open_seconds",
            "How long the task's current interruption has lasted (0 while it forwards, "
            "and on a node that no longer owns it), read when scraped: a gap counted in "
            "forwarder_gap_seconds only once it closes",
            labels,
            registry=self.registry,
        )
        self.output_buffer_cuts = Counter(
            "forwarder_output_buffer_cuts",
            "Pub/sub subscriptions Redis closed most likely for passing its "
            "client-output-buffer-limit pubsub (after the sink held the loop up, or while a "
            "large message arrived): what it had buffered for the subscriber is lost",
            labels,
            registry=self.registry,
        )
        self.origin_skipped = Counter(
            "forwarder_origin_skipped_entries",
            "Stream entries a bridge (to.origin) read and did not forward because they "
            "came from the deployment it writes: the loop a two-way bridge breaks",
            labels,
            registry=self.registry,
        )
        self.hop_limit = Counter(
            "forwarder_hop_limit_drops",
            "Stream entries a bridge dropped because they had crossed to.max_hops bridges "
            "(a cycle its origins do not break): acknowledged unwritten",
            labels,
            registry=self.registry,
        )
        self.echoes_suppressed = Counter(
            "forwarder_echoes_suppressed",
            "Pub/sub messages a bridge (to.echo = suppress) heard and did not forward: "
            "copies the other direction had published where it reads (the loop it breaks)",
            labels,
            registry=self.registry,
        )
        self.echoes_unheard = Counter(
            "forwarder_echoes_unheard",
            "Copies a pub/sub bridge published that the other direction never heard back "
            "within 10 s (not subscribed meanwhile, or the write failed): forgotten",
            labels,
            registry=self.registry,
        )
        self.stream_lag = Gauge(
            "forwarder_stream_lag_entries",
            "Entries of the task's source streams its consumer group has not read yet "
            "(XINFO GROUPS lag, summed over the task's streams; measured every 5 s)",
            labels,
            registry=self.registry,
        )
        self.stream_pending = Gauge(
            "forwarder_stream_pending_entries",
            "Entries the task's consumer group read and has not acknowledged yet (XINFO "
            "GROUPS pending, summed over the task's streams; measured every 5 s)",
            labels,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "forwarder_in_flight",
            "Sink commands awaiting a reply (pub/sub), read when scraped",
            labels,
            registry=self.registry,
        )
        self.running = Gauge(
            "forwarder_task_running", "1 while the task forwards", labels, registry=self.registry
        )
        self.sink_refusing = Gauge(
            "forwarder_sink_refusing",
            "1 while the sink has refused every write it answered since it last took one "
            "(a replica's READONLY, WRONGTYPE, NOPERM...): connected, but not forwarding",
            labels,
            registry=self.registry,
        )
        self.epoch = Gauge(
            "forwarder_task_epoch",
            "The epoch this node owns the task with (ZooKeeper czxid; 0 alone)",
            labels,
            registry=self.registry,
        )
        self.controller = Gauge(
            "forwarder_controller", "1 while this node is the controller", registry=self.registry
        )
        self.session = Gauge(
            "forwarder_zookeeper_session",
            "The ZooKeeper session: 1 connected, 0.5 suspended, 0 lost (alone: 1)",
            registry=self.registry,
        )
        self.owned = Gauge(
            "forwarder_owned_tasks", "Tasks this node owns now", registry=self.registry
        )
        self.fleet = FleetGauges(self.registry)
        self.cut_off = Gauge(
            "forwarder_cut_off",
            "1 while a Redis deployment has been silent to this node past the cut-off time "
            "(session timeout + 2 topology intervals): if other nodes hear it, they get "
            "this node's tasks",
            registry=self.registry,
        )
        self.oversize = Counter(
            "forwarder_oversize_messages",
            "Messages over the route's max_message_bytes, by what became of them",
            [*labels, "action"],
            registry=self.registry,
        )
        self.refused_for_good = Counter(
            "forwarder_refused_for_good",
            "Stream entries the sink refused repeatedly (not transiently), by what became of them",
            [*labels, "action"],
            registry=self.registry,
        )
        self.unfit = Counter(
            "forwarder_unfit_entries",
            "Stream entries a list or channel sink cannot carry as the route asks (no such "
            "field; not UTF-8 for JSON), by what became of them (left pending: each time seen)",
            [*labels, "action"],
            registry=self.registry,
        )
        self.unreplicated = Counter(
            "forwarder_unreplicated_entries",
            "Stream entries the sink took but too few replicas acknowledged in time (the "
            "route's to.wait): left pending at the source and written again",
            labels,
            registry=self.registry,
        )
        self.unconfirmed = Counter(
            "forwarder_unconfirmed_messages",
            "Pub/sub messages written to the sink in a batch too few replicas confirmed "
            "in time (the route's to.wait): at risk if the sink fails over",
            labels,
            registry=self.registry,
        )
        self.unanswered = Counter(
            "forwarder_unanswered_messages",
            "Pub/sub messages written to the sink whose answer never came (the connection "
            "closed first): taken or not, erased if the sink's master was demoted before a "
            "replica had them",
            labels,
            registry=self.registry,
        )
        self.sink_failover_lost = Counter(
            "forwarder_sink_failover_lost_entries",
            "Entries a stream sink master returned an id for (stream entries acknowledged, "
            "pub/sub messages written) that its successor lacked (the last 1000 per sink "
            "key looked for): lost to the failover",
            labels,
            registry=self.registry,
        )
        self.replays = Counter(
            "forwarder_stream_replays",
            "Stream entries the sink already held (their copied id): duplicates avoided",
            labels,
            registry=self.registry,
        )
        self.late = Counter(
            "forwarder_stream_late_entries",
            "Stream entries claimed after newer ones were copied, written with a new id "
            "(late, not lost: a previous owner's pending entries)",
            labels,
            registry=self.registry,
        )
        self.transitions = Counter(
            "forwarder_task_transitions",
            "Task state changes, by the state entered (connecting, forwarding, "
            "backing-off, rehoming, stopping, stopped)",
            [*labels, "state"],
            registry=self.registry,
        )
        self.cycle_errors = Counter(
            "forwarder_cycle_errors",
            "Reconcile cycles that ended in an unexpected error (logged with its traceback; "
            "the node goes on with the next cycle)",
            registry=self.registry,
        )
        self.cycles = Counter(
            "forwarder_cycles",
            "Reconcile cycles run: one a second, more when topology or ZooKeeper wake it",
            registry=self.registry,
        )
        self.standby = StandbyMetrics(self.registry)


class HealthServer:
    """Serves /metrics, /healthz and /readyz from a daemon thread; with a ``fleet``
    view, also the fleet page (``/``) and its document (``/fleet.json``)."""

    def __init__(
        self,
        address: Address,
        metrics: Metrics,
        ready: Callable[[], Readiness],
        fleet: FleetView | None = None,
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.fleet = fleet
        self.last_beat = time.monotonic()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(owner.metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    stalled = time.monotonic() - owner.last_beat > LOOP_STALL_AFTER
                    status = {"status": "stalled" if stalled else "ok"}
                    self._send(503 if stalled else 200, json.dumps(status).encode())
                elif self.path == "/readyz":
                    readiness = owner.ready()
                    body: dict[str, object] = {"ready": readiness.ready, **readiness.details}
                    self._send(200 if readiness.ready else 503, json.dumps(body).encode())
                elif owner.fleet is not None and self._route() == "/":
                    self._send(200, owner.fleet.page(), "text/html; charset=utf-8")
                elif owner.fleet is not None and self._route() == "/fleet.json":
                    answer = owner.fleet.answer()
                    self._send(answer.status, answer.body)
                else:
                    self._send(404, b'{"error": "not found"}')

            def _route(self) -> str:
                return self.path.partition("?")[0]  # a reload with a query is the same page

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                # A prober that gave up (its timeout passed while this node was frozen,
                # SIGSTOP) has closed its end: nothing to answer, and no traceback in
                # the node's log (socketserver prints one for any error; a chaos
                # campaign, issue 17, counts those).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()

            def log_message(self, *_args: object) -> None:
                pass  # scrapes every few seconds would drown the node's own log

        try:
            self.server = ThreadingHTTPServer((address.host, address.port), Handler)
        except OSError as exc:
            problem = AddressInUseError if exc.errno == errno.EADDRINUSE else ForwarderError
            raise problem(
                f"cannot serve metrics on {address} ({exc.strerror or exc}); pick another "
                "[node] metrics address, or stop what listens there"
            ) from exc
        self.address = Address(address.host, self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        """Called from the event loop on every cycle: proof that it is not stalled."""
        self.last_beat = time.monotonic()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.fleet is not None:
            self.fleet.close()
