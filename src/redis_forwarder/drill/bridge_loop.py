"""``drill bridge-loop``: a two-way bridge of the same channel and stream names (issue
20) under traffic on both sides, through two faults, checked for loops.

1. Known state (``bridge_target.settle``): both sides in sync, every task running
   where assigned, standbys listening.
2. Subscribers on every Redis node of both sides; the load on both sides (unique and
   repeated pub/sub payloads, stream entries of repeated payloads: ``bridge_check``).
3. ``kill -9`` of the node that owns the bridge's pub/sub tasks (both directions run
   on one node, sharing its echo ledgers); the drill waits until another node (their
   standby) runs them, restarts the killed node, and waits for the known state.
4. ``SENTINEL FAILOVER`` of one side's master (a target's, when the bridge reads one):
   until its sentinels name the promoted replica, then the known state again.
5. The load stops; the drill waits for the last copies (until all are in, or nothing
   new for ``QUIET``), then watches ``STILL`` seconds in which nothing may move.
6. Both sides' streams are read back; ``bridge_check`` judges.

Every wait is bounded and says what it waited for. The lab's forwarder nodes are
signalled by the pids the lab recorded.
"""

from __future__ import annotations

import logging
import re
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_forwarder.drill.bridge_check import (
    REPEATED,
    STREAM,
    UNIQUE,
    BridgeRun,
    Copy,
    Window,
    check_bridge,
)
from redis_forwarder.drill.bridge_plan import Bridge, Side
from redis_forwarder.drill.bridge_target import (
    BridgeTarget,
    settle,
    wait_for_new_master,
    wait_for_takeover,
)
from redis_forwarder.drill.bridge_traffic import BridgeLoad, Listeners
from redis_forwarder.drill.checker import RouteReport, rates
from redis_forwarder.drill.load import client
from redis_forwarder.drill.ownership_watch import OwnershipWatcher
from redis_forwarder.drill.result import DrillResult
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab
from redis_forwarder.lab.probes import ProbeFailed, redis_call
from redis_forwarder.model import DeploymentKind
from redis_forwarder.retry import Deadline

BRIDGE_LOOP = "bridge-loop"
DESCRIPTION = (
    "traffic both ways on the same channel and stream names, repeated payloads on both "
    "sides; kill -9 of the node running the bridge's pub/sub tasks (their standby takes "
    "over), then SENTINEL FAILOVER of one side's master: nothing lost outside the "
    "faults, nothing twice, nothing back home, nothing circulating after the load"
)
STEADY = 3.0
QUIET = 1.0  # no new copy for this long after the load: the rest is not coming
ARRIVAL_TIMEOUT = 20.0
STILL = 3.0  # seconds after the last copies in which nothing may move
TAKEOVER_EXTRA = 15.0  # beyond the session timeout
FAILOVER_TIMEOUT = 15.0
_REPEATED = re.compile(r"p\d+")
log = logging.getLogger(__name__)


@dataclass
class BridgeLoopResult(DrillResult):
    bridge: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "bridge": self.bridge}


@dataclass
class _Marks:
    """Each side's bridged stream before the load: its last id and length."""

    last: dict[str, str]
    length: dict[str, int]


def run_bridge_loop(
    lab: Lab, rate: float, progress: Callable[[str], None], steady: float = STEADY
) -> BridgeLoopResult:
    target = BridgeTarget(lab, progress)
    bridge = target.bridge
    failing = failover_side(bridge)
    settle(target, "before the drill")
    run = uuid.uuid4().hex[:8]
    marks = _marks(target)
    lanes = {REPEATED: bridge.channels[0], UNIQUE: bridge.channels[-1]}
    sides = tuple(s.identity for s in bridge.sides)

    def lane_of(payload: str) -> str | None:
        if payload.startswith(f"{run}:"):
            return UNIQUE
        return REPEATED if _REPEATED.fullmatch(payload) else None

    listeners = Listeners(
        {s.identity: target.nodes(s) for s in bridge.sides},
        tuple(sorted(set(lanes.values()))),
        lane_of,
    )
    load = BridgeLoad(run, sides, lanes, bridge.stream, target.master, rate)
    windows: list[Window] = []
    split: list[str] = []
    counted: dict[str, int] = {}
    started = time.time()
    progress(f"{BRIDGE_LOOP}: load at {rate:.0f} msg/s on both sides, run {run}")
    listeners.start()
    try:
        load.start()
        try:
            time.sleep(steady)  # steady traffic before the fault: a fixed span, not a wait
            with OwnershipWatcher(target, bridge.routes):
                windows.append(_kill_owner(target, split))
                time.sleep(steady)  # traffic between the faults
                windows.append(_fail_over(target, failing, counted))
                time.sleep(steady)  # traffic after recovery: no loss allowed in it
        finally:
            load.stop()
        target.note(_wait_for_arrivals(target, load, listeners, marks))
        still = _still(target, listeners)
    finally:
        listeners.stop()
    copies = _read_streams(target, marks)
    identity = {s.identity: s.identity for s in bridge.sides}
    verdict = check_bridge(
        BridgeRun(run, (sides[0], sides[1]), identity, load.sent, listeners.heard, copies,
                  windows, still, counted)
    )  # fmt: skip
    _takeovers(target, verdict.routes)
    broken = split + verdict.broken
    fault_at = windows[0].start
    findings = {
        "sides": {s.identity: {"config": s.name, "master": s.master} for s in bridge.sides},
        "windows": [
            {"what": w.what, "from": round(w.start - fault_at, 3),
             "until": round(w.end - fault_at, 3), "standby": w.standby}
            for w in windows
        ],
        "still_seconds": STILL,
        **verdict.findings,
    }  # fmt: skip
    timeline_route = f"pubsub@{sides[0]}>{sides[1]}"
    heard = {h.payload: h.at for h in reversed(listeners.heard) if h.side == sides[1]}
    ours = [p for p in load.sent if p.lane == UNIQUE and p.side == sides[0]]
    timeline = {
        "sent": rates((p.at for p in ours), started),
        "forwarded": rates((heard[p.payload] for p in ours if p.payload in heard), started),
    }
    return BridgeLoopResult(
        BRIDGE_LOOP,
        DESCRIPTION,
        fault_at,
        sorted(target.events + load.events + listeners.events),
        verdict.routes,
        sum(d["lost_by_redis"] for d in verdict.findings["streams"].values()),
        broken,
        timeline,
        started,
        timeline_route,
        notes=summary(findings),
        bridge=findings,
    )


def _takeovers(target: BridgeTarget, routes: dict[str, RouteReport]) -> None:
    """What the pub/sub tasks' owners say their takeover replayed from a standby's ring
    and could not account for (status after the drill)."""
    readers = {route.name: side for side, route in target.bridge.pubsub.items()}
    try:
        tasks = target.pubsub_tasks()
    except Exception as exc:  # the counts are a detail: the verdict stands
        log.warning("takeover counts unavailable: %s", exc)
        return
    for task in tasks:
        reader = readers[task["route"]]
        report = routes.get(f"pubsub@{reader}>{target.bridge.other(reader).identity}")
        if report is not None:
            report.replayed += int(task.get("replayed") or 0)
            report.unaccounted_seconds += float(task.get("unaccounted_seconds") or 0.0)


def failover_side(bridge: Bridge) -> Side:
    """The side to fail over: a Sentinel target (a deployment read with
    ``from.deployment``) before ``source``."""
    sentinel = [s for s in bridge.sides if s.kind is DeploymentKind.SENTINEL]
    if not sentinel:
        raise UsageError(
            "drill bridge-loop fails over one side's master with SENTINEL FAILOVER: one "
            "side of the bridge must be a Sentinel deployment"
        )
    return sorted(sentinel, key=lambda s: s.name == "source")[0]


def _kill_owner(target: BridgeTarget, split: list[str]) -> Window:
    tasks = target.pubsub_tasks()
    owners = sorted({str(t["owner"]) for t in tasks if t["owner"]})
    standbys = sorted({str(t["standby"]) for t in tasks if t["standby"]})
    if not owners:
        raise RuntimeError("the bridge's pub/sub tasks have no owner to kill")
    if len(owners) > 1 or len(standbys) > 1:
        split.append(
            f"the bridge's pub/sub tasks run on {owners}, standbys {standbys}: both "
            "directions must share one node (their echo ledgers)"
        )
    victim = owners[0]
    covered = bool(tasks) and all(t["standby"] for t in tasks)
    fault_at = time.time()
    target.signal(victim, signal.SIGKILL)
    target.note(f"kill -9 {victim} (owner of the bridge's pub/sub tasks; standby {standbys})")
    try:
        taken = wait_for_takeover(target, victim, target.session_timeout + TAKEOVER_EXTRA)
        now = sorted({str(t["owner"]) for t in taken.values()})
        target.note(
            f"pub/sub tasks run on {now} {time.time() - fault_at:.2f}s after the kill "
            f"(their standby was {standbys})"
        )
    finally:
        target.restart(victim)
    settle(target, f"after kill -9 {victim}")
    target.note("whole again")
    return Window(f"kill -9 {victim}", fault_at, time.time(), standby=covered)


def _fail_over(target: BridgeTarget, side: Side, counted: dict[str, int]) -> Window:
    """SENTINEL FAILOVER of ``side``'s master; ``counted``: per stream direction, the
    entries the forwarder says the failover erased from its sink (filled in)."""
    old = target.master(side.identity)
    before = target.counted_losses()
    fault_at = time.time()
    problems = []
    for sentinel in target.sentinels(side):
        try:
            redis_call(sentinel, "SENTINEL", "FAILOVER", side.master, timeout=2)
            break
        except ProbeFailed as exc:
            problems.append(f"{sentinel}: {exc}")
    else:
        raise RuntimeError(f"no sentinel started a failover of {side.master}: {problems}")
    target.note(f"SENTINEL FAILOVER {side.master} ({side.identity}, master {old})")
    new = wait_for_new_master(target, side.identity, old, FAILOVER_TIMEOUT)
    target.note(f"{side.identity}'s master is now {new}")
    settle(target, f"after the failover of {side.identity}")
    target.note("whole again")
    recovered = time.time()
    after = target.counted_losses()
    for reader, route in target.bridge.streams.items():
        way = f"{reader}>{target.bridge.other(reader).identity}"
        counted[way] = round(after[route.name] - before[route.name])
    return Window(
        f"SENTINEL FAILOVER {side.identity}", fault_at, recovered, failed_over=side.identity
    )


def _stream_client(target: BridgeTarget, side: str) -> redis.Redis:
    return client(target.master(side), timeout=10)


def _marks(target: BridgeTarget) -> _Marks:
    marks = _Marks({}, {})
    stream = target.bridge.stream
    for side in target.bridge.sides:
        server = _stream_client(target, side.identity)
        try:
            newest: Any = server.xrevrange(stream, "+", "-", count=1)
            marks.last[side.identity] = newest[0][0].decode() if newest else "0-0"
            marks.length[side.identity] = int(server.xlen(stream))
        finally:
            server.close()
    return marks


def _lengths(target: BridgeTarget) -> dict[str, int]:
    found = {}
    for side in target.bridge.sides:
        server = _stream_client(target, side.identity)
        try:
            found[side.identity] = int(server.xlen(target.bridge.stream))
        finally:
            server.close()
    return found


def _wait_for_arrivals(
    target: BridgeTarget, load: BridgeLoad, listeners: Listeners, marks: _Marks
) -> str:
    """Until every unique message was heard on the other side and each stream is as
    long as both sides' entries make it, or nothing new came for QUIET; bounded."""
    bridge = target.bridge
    expected_unique = {
        (bridge.other(p.side).identity, p.payload) for p in load.sent if p.lane == UNIQUE
    }
    entries = sum(1 for p in load.sent if p.lane == STREAM)
    deadline = Deadline(ARRIVAL_TIMEOUT)
    last_change = time.monotonic()
    seen: tuple[int, dict[str, int]] | None = None
    while True:
        lengths = _lengths(target)
        now = (len(listeners.heard), lengths)
        if now != seen:
            seen, last_change = now, time.monotonic()
        heard = {(h.side, h.payload) for h in listeners.heard if h.lane == UNIQUE}
        missing = len(expected_unique - heard)
        short = sum(max(0, marks.length[s] + entries - n) for s, n in lengths.items())
        waited = deadline.elapsed
        if not missing and not short:
            return f"every message and entry arrived ({waited:.2f}s after the load stopped)"
        if time.monotonic() - last_change >= QUIET:
            return f"quiet for {QUIET:.1f}s with {missing} messages, {short} entries not there"
        if deadline.expired:
            return (
                f"still arriving after {ARRIVAL_TIMEOUT:.0f}s: {missing} messages, {short} entries"
            )
        time.sleep(0.1)  # polling, bounded by the deadline and the quiet span above


def _still(target: BridgeTarget, listeners: Listeners) -> dict[str, int]:
    """What moved in STILL seconds after the last copies landed: a loop keeps moving."""
    sides = [s.identity for s in target.bridge.sides]
    before = ({s: listeners.count(s) for s in sides}, _lengths(target))
    time.sleep(STILL)  # the span watched: a fixed measurement, not a wait for a condition
    after = ({s: listeners.count(s) for s in sides}, _lengths(target))
    moved = {f"pub/sub heard on {s}": after[0][s] - before[0][s] for s in sides}
    moved |= {f"stream entries on {s}": after[1][s] - before[1][s] for s in sides}
    target.note(f"watched {STILL:.0f}s after the last copies: {sum(moved.values())} moved")
    return moved


def _read_streams(target: BridgeTarget, marks: _Marks) -> list[Copy]:
    """Both sides' bridged stream after the run's start, from their masters now."""
    copies: list[Copy] = []
    for side in target.bridge.sides:
        server = _stream_client(target, side.identity)
        start = f"({marks.last[side.identity]}"
        try:
            while True:
                page: Any = server.xrange(target.bridge.stream, min=start, max="+", count=10_000)
                if not page:
                    break
                for entry_id, fields in page:
                    pairs = tuple(
                        (k.decode(errors="replace"), v.decode(errors="replace"))
                        for k, v in fields.items()
                    )
                    copies.append(Copy(side.identity, entry_id.decode(), pairs))
                start = "(" + page[-1][0].decode()
        finally:
            server.close()
    return copies


def summary(findings: dict[str, Any]) -> list[str]:
    """The findings as lines of text (the table shows the routes' numbers)."""
    lines = [
        "windows: " + "; ".join(
            f"{w['what']} {w['from']:+.2f}s..{w['until']:+.2f}s"
            + (" (hot standby)" if w["standby"] else "")
            for w in findings["windows"]
        )
    ]  # fmt: skip
    for way, p in findings["pubsub"].items():
        lost = ", ".join(f"{n} in '{w}'" for w, n in p["lost_in_windows"].items()) or "0"
        lines.append(
            f"pub/sub {way}: {p['sent']} sent, {p['arrived']} arrived, lost {lost} and "
            f"{p['lost_outside_windows']} outside the windows, {p['duplicated']} duplicated "
            f"({p['duplicated_in_standby_window']} in a standby's takeover), "
            f"{p['came_back']} came back"
        )
    for side, r in findings["repeated"].items():
        lines.append(
            f"repeated payloads heard on {side}: {r['heard']} of {r['expected']} expected, "
            f"{r['missing']} missing ({r['missing_allowed']} sent in the windows), "
            f"{r['extra']} extra ({r['extra_allowed']} allowed)"
        )
    for way, s in findings["streams"].items():
        where = ", ".join(f"{n} in '{w}'" for w, n in s["lost_in_windows"].items())
        lines.append(
            f"stream {way}: {s['sent']} sent, {s['lost_by_redis']} lost by Redis itself, "
            f"{s['copied']} copied, {s['lost']} lost{f' ({where})' if where else ''}, "
            f"{s['duplicated']} duplicated, {s['came_back']} came back, "
            f"{s['over_one_hop']} over one hop"
        )
        if s["lost_to_sink_failover"] or s["counted_by_forwarder"]:
            lines.append(
                f"stream {way}: {s['lost_to_sink_failover']} written into the failing-over "
                "master and erased when it resynced (Redis' asynchronous replication, no "
                f"`wait`); the forwarder counted {s['counted_by_forwarder']} "
                "(forwarder_sink_failover_lost_entries_total)"
            )
    moved = {what: n for what, n in findings["still"].items() if n}
    lines.append(
        f"after the load: nothing moved in {findings['still_seconds']:.0f}s"
        if not moved
        else f"after the load, in {findings['still_seconds']:.0f}s: {moved}"
    )
    return lines
