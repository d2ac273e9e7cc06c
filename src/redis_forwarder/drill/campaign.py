"""A chaos campaign on a lab that is up: the nemesis' seeded schedule (``nemesis.py``)
struck under steady load, faults overlapping, then one verdict over the whole run
(``chaos_check.py``). This module only sequences: each planned fault runs in a thread
of its own (wait for its time, wait at its resource's gate, strike, hold, heal), so a
fault whose strike takes seconds (a status read while ZooKeeper is down) never delays
another's heal.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import redis

from redis_forwarder.drill import gates, nemesis, sinks
from redis_forwarder.drill.campaign_result import CampaignResult, FaultRecord
from redis_forwarder.drill.chaos_check import (
    SOURCE_SETTLE,
    Span,
    judge_routes,
    liveness_broken,
)
from redis_forwarder.drill.checker import check, rates
from redis_forwarder.drill.exits import ExitWatch, log_alarms, log_lines, log_offsets
from redis_forwarder.drill.faults import Striker, Unresolved
from redis_forwarder.drill.load import Load
from redis_forwarder.drill.ownership_watch import OwnershipWatcher
from redis_forwarder.drill.runner import read_back
from redis_forwarder.drill.settle import SETTLE_TIMEOUT, settle
from redis_forwarder.drill.sink_counts import counted_in_logs
from redis_forwarder.drill.target import LabTarget
from redis_forwarder.drill.workload import CLUSTER_LANE, PUBSUB_ROUTE, Lane, drill_routes
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab
from redis_forwarder.model import DeploymentKind
from redis_forwarder.retry import Deadline

GATE_WAIT = 30.0  # seconds a fault waits for its resource to be whole, then it is skipped
STEADY_AFTER = 3.0  # seconds of load after the fleet settled: no loss allowed in them
GATE_POLL = 0.25
ACK_WAIT = 10.0  # seconds for the last acknowledgements of stream entries to come in
# Seconds without a new copy in the sinks that end the wait for the last ones: longer
# than a drill's (1 s), since a stream task may still be moving after the last fault.
ARRIVALS_QUIET = 5.0
# A fleet settled must still be settled this much later: a node frozen past its session
# looks settled for the moment after it wakes, before it notices its session is gone.
STABLE_FOR = 2.0

log = logging.getLogger(__name__)


def run_campaign(
    lab: Lab,
    *,
    seed: int,
    seconds: float,
    kinds: list[str] | None,
    rate: float,
    progress: Callable[[str], None],
    root: bool,
) -> CampaignResult:
    target = LabTarget(lab, progress)
    fitting = nemesis.applicable(target.kind, root)
    chosen = fitting if kinds is None else kinds
    unfit = sorted(set(chosen) - set(fitting))
    if unfit:
        raise UsageError(
            f"fault kinds {', '.join(unfit)} do not fit this {target.kind} lab"
            f"{'' if root else ' (partitions need root)'}; it takes: {', '.join(fitting)}"
        )
    shards = target.shards if target.kind is not DeploymentKind.CLUSTER else []
    schedule = nemesis.plan(seed, seconds, chosen, shards)
    partitions = any(nemesis.KINDS[k].needs_root for k in chosen)
    cleanup = target.isolate_nodes() if partitions else None
    try:
        settle(target, "before the campaign")
        return _campaign(target, seed, seconds, chosen, rate, schedule)
    finally:
        if cleanup is not None:
            cleanup()


def _campaign(
    target: LabTarget,
    seed: int,
    seconds: float,
    kinds: list[str],
    rate: float,
    schedule: list[nemesis.Planned],
) -> CampaignResult:
    lab = target.lab
    run = uuid.uuid4().hex[:8]
    load = Load(run, target.workload.lanes, target.locate, rate)
    offsets = log_offsets(lab)
    records = [FaultRecord(planned) for planned in schedule]
    halt = threading.Event()
    settled_after: float | None = None
    unsettled = ""
    target.progress(f"chaos: {len(schedule)} faults in {seconds:.0f}s, seed {seed}, run {run}")
    with ExitWatch(lab) as watch, OwnershipWatcher(target):
        started = time.time()
        load.start()
        try:
            _strike_all(target, Striker(target, watch.expect), records, started, halt)
            last_heal = max((r.healed_at for r in records if r.healed_at), default=started)
            try:
                settle(target, "after the last fault")
                time.sleep(STABLE_FOR)  # a fixed span: then it must be settled at once
                settle(target, "after the last fault, again")
                settled_after = round(time.time() - last_heal - STABLE_FOR, 2)
                target.note(f"settled {settled_after:.1f}s after the last fault healed")
            except RuntimeError as exc:
                unsettled = str(exc)
            time.sleep(STEADY_AFTER)  # load after recovery: a fixed span, not a wait
        finally:
            halt.set()  # (an interrupted campaign heals what it holds at once)
            load.stop()
    sent, received, replication_loss = read_back(target, run, load, quiet=ARRIVALS_QUIET)
    unacknowledged = _unacknowledged(target)
    reports = check(sent, received, started)
    spans = _spans(records, target.session_timeout)
    pubsub_routes = {name for name in reports if name.startswith("pubsub@")}
    standby_routes = {name for name in pubsub_routes if target.has_standby(name)}
    cluster = target.kind is DeploymentKind.CLUSTER
    shard_of = {name: "" if cluster else name.split("@", 1)[1] for name in pubsub_routes}
    logs = log_lines(lab, offsets)  # read once: for what was counted, and for alarms
    at_sink = _counted_at_sink(counted_in_logs(logs), pubsub_routes, cluster)
    routes, broken = judge_routes(
        reports, sent, received, spans, standby_routes, shard_of, started, at_sink
    )
    alarms = log_alarms(logs)
    exits = [e.to_json() for e in watch.exits]
    broken += liveness_broken(settled_after, unsettled, exits, alarms)
    broken += [f"{r.planned.kind}: heal failed: {r.error}" for r in records if r.error]
    broken += [
        f"stream@{lane}: {count} entries read and never acknowledged (a task reading after "
        "its stop?)"
        for lane, count in unacknowledged.items()
        if count
    ]
    timeline = {
        "sent": rates((s.at for s in sent if s.route in pubsub_routes), started),
        "forwarded": rates(
            (r.at for r in received if r.route in pubsub_routes and r.at is not None), started
        ),
    }
    return CampaignResult(
        seed=seed,
        seconds=seconds,
        kinds=kinds,
        rate=rate,
        kind=str(target.kind),
        started_at=started,
        faults=records,
        routes=routes,
        replication_loss=replication_loss,
        settled_after_s=settled_after,
        exits=exits,
        alarms=alarms,
        broken=broken,
        events=sorted(target.events + load.events),
        timeline=timeline,
        timeline_route="pub/sub, every route" if not cluster else f"pubsub@{CLUSTER_LANE}",
        unacknowledged=unacknowledged,
    )


def _counted_at_sink(
    counts: dict[tuple[str, str], int], pubsub_routes: set[str], cluster: bool
) -> dict[str, int]:
    """The drill's pub/sub tasks' counts (``sink_counts``) per checked route: on a
    cluster, every task serves the one pub/sub lane."""
    found: dict[str, int] = defaultdict(int)
    for (route, shard), count in counts.items():
        name = f"pubsub@{CLUSTER_LANE if cluster else shard}"
        if route == PUBSUB_ROUTE and name in pubsub_routes:
            found[name] += count
    return dict(found)


def _strike_all(
    target: LabTarget,
    striker: Striker,
    records: list[FaultRecord],
    origin: float,
    halt: threading.Event,
) -> None:
    locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
    shards = target.shards if target.kind is not DeploymentKind.CLUSTER else []
    threads = []
    for record in records:
        taken = [locks[r] for r in sorted(record.planned.resources(shards))]  # one order
        thread = threading.Thread(
            target=_one_fault,
            args=(target, striker, record, origin, taken, halt),
            name=f"chaos-{record.planned.kind}",
            daemon=True,
        )
        threads.append(thread)
        thread.start()
    longest = max((r.planned.at + r.planned.hold for r in records), default=0.0)
    deadline = Deadline(longest + 2 * GATE_WAIT + SETTLE_TIMEOUT)
    for thread in threads:
        thread.join(max(0.1, deadline.remaining))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:  # a strike or heal hung past every bound: say so, heal what can be
        halt.set()
        raise RuntimeError(f"chaos faults did not end in time: {', '.join(stuck)}")


def _one_fault(
    target: LabTarget,
    striker: Striker,
    record: FaultRecord,
    origin: float,
    locks: list[threading.Lock],
    halt: threading.Event,
) -> None:
    planned = record.planned
    if halt.wait(max(0.0, origin + planned.at - time.time())):
        record.skipped = "the campaign stopped"
        return
    held: list[threading.Lock] = []
    deadline = Deadline(GATE_WAIT)
    try:
        for lock in locks:
            if not lock.acquire(timeout=max(0.0, deadline.remaining)):
                record.skipped = "its resource was still taken by an earlier fault"
                target.note(f"skipped {planned.kind}: {record.skipped}")
                return
            held.append(lock)
        _gate_strike_heal(target, striker, record, halt)
    finally:
        for lock in held:
            lock.release()


def _gate_strike_heal(
    target: LabTarget, striker: Striker, record: FaultRecord, halt: threading.Event
) -> None:
    planned = record.planned
    shards = target.shards if target.kind is not DeploymentKind.CLUSTER else []
    deadline = Deadline(GATE_WAIT)
    resources = planned.resources(shards)
    reason = gates.closed_any(target, resources)
    while reason and not deadline.expired and not halt.is_set():
        halt.wait(GATE_POLL)  # polling the gates, with the deadline above
        reason = gates.closed_any(target, resources)
    if reason:
        record.skipped = f"not whole after {GATE_WAIT:.0f}s: {reason}"
        target.note(f"skipped {planned.kind}: {record.skipped}")
        return
    try:
        struck = striker.strike(planned)
    except Unresolved as exc:
        record.skipped = str(exc)
        target.note(f"skipped {planned.kind} ({planned.aim}): {exc}")
        return
    except Exception as exc:  # a command refused (a failover already under way): no fault
        record.skipped = f"could not strike: {exc}"
        target.note(f"skipped {planned.kind}: {record.skipped}")
        return
    record.at = time.time()
    record.victim, record.shard = struck.victim, struck.shard
    target.note(f"{planned.kind} on {struck.victim} ({planned.aim}) for {planned.hold:.1f}s")
    halt.wait(planned.hold)  # the fault lasts this long (an interrupt heals at once)
    try:
        struck.heal()
    except Exception as exc:  # said in the verdict: the lab may not be whole
        record.error = str(exc)
        log.warning("healing %s on %s failed: %s", planned.kind, struck.victim, exc)
    record.healed_at = time.time()
    target.note(f"healed {planned.kind} on {struck.victim}")


def _unacknowledged(target: LabTarget) -> dict[str, int]:
    """Per stream lane, entries its group read and never acknowledged, once the last
    acknowledgements had ACK_WAIT to come in."""
    _pubsub, streams = drill_routes(target.config)
    group = streams.from_.group or ""
    clients: dict[str, redis.Redis] = {}

    def source_of(lane: Lane) -> redis.Redis:
        address = target.source_address(lane)
        if str(address) not in clients:
            clients[str(address)] = redis.Redis(address.host, address.port, socket_timeout=5)
        return clients[str(address)]

    deadline = Deadline(ACK_WAIT)
    try:
        while True:
            found = sinks.pending(target.workload.lanes, group, source_of)
            if not any(found.values()) or deadline.expired:
                return found
            time.sleep(0.2)  # polling, with the deadline above
    finally:
        for client in clients.values():
            client.close()


def _spans(records: list[FaultRecord], session_timeout: float) -> list[Span]:
    """The spans faults may cost pub/sub messages in (``chaos_check.Span``): a source
    fault's until SOURCE_SETTLE after its heal; any other's until its takeover could
    have ended (a session timeout more)."""
    spans = []
    for record in records:
        if record.at is None or record.healed_at is None:
            continue
        # A fault that hit a source shard (a sink that is a source master too: faults.py)
        source = nemesis.KINDS[record.planned.kind].source or bool(record.shard)
        after = SOURCE_SETTLE if source else SOURCE_SETTLE + session_timeout
        spans.append(Span(record.at, record.healed_at + after, record.shard, source))
    return spans
