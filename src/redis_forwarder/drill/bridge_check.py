"""What a ``drill bridge-loop`` found, from what the load sent on both sides and what
was heard and stored on both sides. Pure (unit-tested on synthetic runs).

Three lanes per side, all on the bridge's own names (the same on both sides):

- ``unique``: pub/sub, payload ``RUN:SIDE:SEQ``, one message each: exactly once on
  the other side, heard once on its own side (twice: it came back);
- ``repeated``: pub/sub, payload ``pN`` (N = seq mod 20) and the same payloads on both
  sides: no message can be told from another, so each side's multiset per payload is
  compared with what both sides sent (more: an echo or a duplicate; fewer: lost);
- ``stream``: entries ``{payload: pN}``, the same on both sides; a copy names its
  original by ``fwd-origin`` and ``fwd-origin-id`` (the id XADD returned).

Pub/sub is heard by a subscriber on every Redis node of a side (a message reaches a
master's replicas too), so a subscriber cut off by a failover (Sentinel disconnects
the clients of both nodes it reconfigures) does not read as a loss when another heard
it. A message's copies are the most any one node heard of it. For the repeated lane
that makes "missing" an upper bound of the loss (while a demoted master is a master of
its own, what was published on it reached its subscribers only, and identical
payloads on two nodes cannot be told apart) and "extra" a lower bound of the echoes.

Guarantees (a broken one fails the drill):

- nothing comes back: a ``unique`` message heard twice on one node of its own side
  (but, inside a standby's takeover window, the dead owner's last copies written again
  by the replay: counted), a stream entry stamped with its own side's origin there, a
  copy over one hop;
- streams: every entry the origin still holds is copied once (twice only inside a
  disturbed window: at least once, as every stream route), its fields as written;
  written by one owner at a time. Reported apart, as Redis' own losses: an
  entry its origin no longer holds (acknowledged by a master that failed over before
  its replica had it), and a copy written into a side while that side's master failed
  over (the demoted master takes writes until the sentinels reconfigure it, then
  erases them; the forwarder counts them, ``counted``);
- pub/sub: every message arrives exactly once on the other side, except that messages
  published inside a disturbed window (a fault until the lab is whole again, with
  ``WINDOW_SLACK``) may be lost, counted per window; and inside a window of a fault
  of the node that owns the bridge's pub/sub tasks, when those tasks have a hot
  standby, duplicates are allowed and counted (the standby replays what its dead owner
  wrote after its last watermark, docs/drills.md);
- still: after the load stopped and the last copies landed, nothing moves for the
  still span (a loop would keep messages circulating).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.drill.checker import WINDOW_SLACK, Received, RouteReport, Sent, check

UNIQUE, REPEATED, STREAM = "unique", "repeated", "stream"
REPEATS = 20  # distinct payloads of the repeated lanes: p0 .. p19
SHOWN = 10  # send times shown of the messages that broke a guarantee
STAMPS = frozenset({"fwd-origin", "fwd-origin-id", "fwd-via", "fwd-hops", "node", "epoch"})


def repeated_payload(seq: int) -> str:
    return f"p{seq % REPEATS}"


def unique_payload(run: str, side: str, seq: int) -> str:
    return f"{run}:{side}:{seq}"


@dataclass(frozen=True)
class Published:
    """A message or entry the load sent and its server acknowledged."""

    lane: str  # UNIQUE, REPEATED or STREAM
    side: str  # the deployment it was sent to
    seq: int  # per (lane, side)
    payload: str
    at: float
    entry_id: str = ""  # streams: the id XADD returned


@dataclass(frozen=True)
class Heard:
    """A pub/sub message a subscriber heard on one Redis node of a side."""

    side: str
    node: str
    lane: str  # UNIQUE or REPEATED (by its channel)
    payload: str
    at: float


@dataclass(frozen=True)
class Copy:
    """A stream entry found on a side after the run began (its own or a copy)."""

    side: str
    entry_id: str
    fields: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.fields if k == name), None)


@dataclass(frozen=True)
class Window:
    """A disturbed span: from a fault until the lab was whole again."""

    what: str
    start: float
    end: float
    standby: bool = False  # a fault of the pub/sub owner node that a hot standby covers
    failed_over: str = ""  # the side whose master failed over in it, if any

    def holds(self, at: float) -> bool:
        return self.start - WINDOW_SLACK <= at <= self.end + WINDOW_SLACK


@dataclass
class BridgeRun:
    """Everything the checker reads."""

    run: str
    sides: tuple[str, str]  # the deployments' config names
    identity: Mapping[str, str]  # config name -> the name bridges stamp
    published: list[Published]
    heard: list[Heard]
    copies: list[Copy]  # both sides' stream entries after the run's start
    windows: list[Window]
    still: Mapping[str, int] = field(default_factory=dict)  # what moved after the load
    # per stream direction ("A>B"): the entries the forwarder itself counted lost to a
    # sink's failover (forwarder_sink_failover_lost_entries_total), for the report
    counted: Mapping[str, int] = field(default_factory=dict)


@dataclass
class BridgeVerdict:
    routes: dict[str, RouteReport]
    findings: dict[str, Any]
    broken: list[str]


def check_bridge(run: BridgeRun) -> BridgeVerdict:
    fault_at = min((w.start for w in run.windows), default=0.0)
    recovered = max((w.end for w in run.windows), default=fault_at)
    routes: dict[str, RouteReport] = {}
    findings: dict[str, Any] = {"pubsub": {}, "repeated": {}, "streams": {}}
    broken: list[str] = []
    for here, there in (run.sides, run.sides[::-1]):
        name = f"pubsub@{here}>{there}"
        report, found, problems = _unique(run, here, there, name, fault_at, recovered)
        routes[name], findings["pubsub"][f"{here}>{there}"] = report, found
        broken += [f"{name}: {p}" for p in problems]
    for side in run.sides:
        name = f"repeated@{side}"
        report, found, problems = _repeated(run, side, name)
        routes[name], findings["repeated"][side] = report, found
        broken += [f"{name}: {p}" for p in problems]
    for here, there in (run.sides, run.sides[::-1]):
        name = f"stream@{here}>{there}"
        report, found, problems = _stream(run, here, there, name, fault_at, recovered)
        routes[name], findings["streams"][f"{here}>{there}"] = report, found
        broken += [f"{name}: {p}" for p in problems]
    moved = {what: count for what, count in run.still.items() if count}
    findings["still"] = dict(run.still)
    if moved:
        broken.append(
            "still moving after the load stopped and the last copies landed (a loop): "
            + ", ".join(f"{what} +{count}" for what, count in sorted(moved.items()))
        )
    return BridgeVerdict(routes, findings, broken)


def _per_node(heard: Iterable[Heard]) -> dict[str, Counter[str]]:
    nodes: dict[str, Counter[str]] = defaultdict(Counter)
    for message in heard:
        nodes[message.node][message.payload] += 1
    return nodes


def _most(nodes: Mapping[str, Counter[str]], payload: str) -> int:
    return max((counts[payload] for counts in nodes.values()), default=0)


def _unique(
    run: BridgeRun, here: str, there: str, name: str, fault_at: float, recovered: float
) -> tuple[RouteReport, dict[str, Any], list[str]]:
    """Pub/sub ``here`` -> ``there``, one message each."""
    sent = [p for p in run.published if p.lane == UNIQUE and p.side == here]
    by_payload = {p.payload: p for p in sent}
    heard_there = [h for h in run.heard if h.lane == UNIQUE and h.side == there]
    heard_here = [h for h in run.heard if h.lane == UNIQUE and h.side == here]
    far, near = _per_node(heard_there), _per_node(heard_here)
    first: dict[str, float] = {}
    for message in heard_there:
        first[message.payload] = min(message.at, first.get(message.payload, message.at))
    received = [
        Received(name, UNIQUE, by_payload[payload].seq, first[payload])
        for payload in first
        if payload in by_payload
        for _copy in range(_most(far, payload))
    ]
    report = check([Sent(name, UNIQUE, p.seq, p.at) for p in sent], received, fault_at, recovered)[
        name
    ]
    arrived = {payload for payload in first if payload in by_payload}
    lost = [p for p in sent if p.payload not in arrived]
    in_window = _windows_of(run, (p.at for p in lost))
    outside = in_window.pop("outside", 0)
    duplicated = [p for p in sent if _most(far, p.payload) > 1]
    allowed = [p for p in duplicated if any(w.standby and w.holds(p.at) for w in run.windows)]
    back = [p for p in sent if _most(near, p.payload) > 1]
    came_back = sum(_most(near, p.payload) - 1 for p in back)
    # The dead owner's last copies (after its last watermark) are written again by the
    # standby's replay; should the standby have heard one's echo before its original
    # (docs/bridging.md, Limits), that copy goes home once: counted, never a cycle.
    back_allowed = [p for p in back if any(w.standby and w.holds(p.at) for w in run.windows)]
    came_back_in_window = sum(_most(near, p.payload) - 1 for p in back_allowed)
    unheard_here = sum(1 for p in sent if _most(near, p.payload) == 0)
    found = {
        "sent": len(sent),
        "arrived": len(arrived),
        "lost_in_windows": dict(in_window),
        "lost_outside_windows": outside,
        "duplicated": report.duplicated,
        "duplicated_in_standby_window": sum(_most(far, p.payload) - 1 for p in allowed),
        "came_back": came_back,
        "came_back_in_standby_window": came_back_in_window,
        "unheard_on_own_side": unheard_here,  # a subscriber cut off: not the bridge's
        # seconds from the first fault at which the first of them were sent
        "came_back_sent_at": [round(p.at - fault_at, 3) for p in back[:SHOWN]],
        "lost_outside_sent_at": [
            round(p.at - fault_at, 3) for p in lost if not any(w.holds(p.at) for w in run.windows)
        ][:SHOWN],
        "duplicated_sent_at": [round(p.at - fault_at, 3) for p in duplicated[:SHOWN]],
    }
    problems = []
    if outside:
        problems.append(f"{outside} messages lost outside the disturbed windows")
    if len(duplicated) > len(allowed):
        problems.append(
            f"{len(duplicated) - len(allowed)} messages duplicated outside a standby's "
            "takeover window"
        )
    if came_back > came_back_in_window:
        problems.append(
            f"{came_back - came_back_in_window} copies came back to {here}, where they were "
            "published, outside a standby's takeover window"
        )
    if report.epoch_overlap:
        problems.append(f"{report.epoch_overlap} writes by an older owner after a newer one")
    return report, found, problems


def _repeated(
    run: BridgeRun, side: str, name: str
) -> tuple[RouteReport, dict[str, Any], list[str]]:
    """Both sides' repeated payloads, as heard on ``side``: a multiset per payload."""
    sent = [p for p in run.published if p.lane == REPEATED]
    expected = Counter(p.payload for p in sent)
    nodes = _per_node(h for h in run.heard if h.lane == REPEATED and h.side == side)
    heard = {payload: _most(nodes, payload) for payload in expected.keys() | _payloads(nodes)}
    extra = sum(max(0, heard[p] - expected[p]) for p in heard)
    missing = sum(max(0, expected[p] - heard.get(p, 0)) for p in expected)
    allowed_missing = sum(1 for p in sent if any(w.holds(p.at) for w in run.windows))
    allowed_extra = sum(
        1 for p in sent if p.side != side and any(w.standby and w.holds(p.at) for w in run.windows)
    )
    report = RouteReport(
        name,
        sent=sum(expected.values()),
        forwarded=sum(min(heard.get(p, 0), n) for p, n in expected.items()),
        lost=missing,
        duplicated=extra,
    )
    found = {
        "expected": sum(expected.values()),
        "heard": sum(heard.values()),
        "missing": missing,
        "extra": extra,
        "missing_allowed": allowed_missing,  # sent (by either side) inside a window
        "extra_allowed": allowed_extra,  # sent by the other side inside a standby window
    }
    problems = []
    if missing > allowed_missing:
        problems.append(
            f"{missing} messages missing, more than the {allowed_missing} sent inside the "
            "disturbed windows"
        )
    if extra > allowed_extra:
        problems.append(
            f"{extra} copies more than both sides sent (echoes or duplicates; "
            f"{allowed_extra} allowed, sent inside a standby's takeover window)"
        )
    return report, found, problems


def _payloads(nodes: Mapping[str, Counter[str]]) -> set[str]:
    return {payload for counts in nodes.values() for payload in counts}


def _stream(
    run: BridgeRun, here: str, there: str, name: str, fault_at: float, recovered: float
) -> tuple[RouteReport, dict[str, Any], list[str]]:
    """Stream entries XADDed on ``here`` and their copies on ``there``."""
    origin = run.identity[here]
    written = [p for p in run.published if p.lane == STREAM and p.side == here]
    kept = {c.entry_id for c in run.copies if c.side == here and c.get("fwd-origin") is None}
    sent = [p for p in written if p.entry_id in kept]
    by_id = {p.entry_id: p for p in sent}
    received: list[Received] = []
    unattributed = over_one_hop = altered = 0
    for copy in run.copies:
        if copy.side != there or copy.get("fwd-origin") != origin:
            continue
        original = by_id.get(copy.get("fwd-origin-id") or "")
        if original is None:
            unattributed += 1  # an XADD whose reply was lost, or one Redis lost
            continue
        if copy.get("fwd-hops") != "1" or copy.get("fwd-via") != origin:
            over_one_hop += 1
        if {k: v for k, v in copy.fields if k not in STAMPS} != {"payload": original.payload}:
            altered += 1
        received.append(
            Received(
                name, STREAM, original.seq, int(copy.entry_id.split("-")[0]) / 1000,
                copy.get("node") or "", int(copy.get("epoch") or 0), here,
            )
        )  # fmt: skip
    report = check([Sent(name, STREAM, p.seq, p.at) for p in sent], received, fault_at, recovered)[
        name
    ]
    copies_of = Counter(r.seq for r in received)
    copied = set(copies_of)
    lost = [p for p in sent if p.seq not in copied]
    # Written into ``there`` while its master failed over: a demoted master takes
    # writes until the sentinels reconfigure it, and erases them when it resyncs
    # (Redis' asynchronous replication; docs/drills.md, "Sink failover and wait").
    erased = [
        p for p in lost
        if any(w.failed_over == there and w.holds(p.at) for w in run.windows)
    ]  # fmt: skip
    # Home again: an entry on its own side stamped with that side as its origin.
    came_back = sum(1 for c in run.copies if c.side == here and c.get("fwd-origin") == origin)
    found = {
        "sent": len(written),
        "lost_by_redis": len(written) - len(sent),  # acknowledged, then not on the origin
        "copied": report.forwarded,
        "lost": report.lost,
        "duplicated": report.duplicated,
        "came_back": came_back,
        "over_one_hop": over_one_hop,
        "altered": altered,
        "unattributed": unattributed,
        "lost_sent_between": _span(report.lost_from, report.lost_until, fault_at),
        "lost_in_windows": dict(_windows_of(run, [p.at for p in lost])),
        "lost_to_sink_failover": len(erased),
        "duplicated_sent_at": [round(p.at - fault_at, 3) for p in sent if copies_of[p.seq] > 1][
            :SHOWN
        ],
        "counted_by_forwarder": run.counted.get(f"{here}>{there}", 0),
    }
    problems = []
    if report.lost > len(erased):
        problems.append(
            f"{report.lost - len(erased)} entries lost (a stream bridge may lose none but "
            "what the failover of its sink erased)"
        )
    # At least once, as every stream route: a task that moves (a kill, a failover)
    # may write an entry twice; only inside a disturbed window.
    twice = [p for p in sent if copies_of[p.seq] > 1]
    outside = [p for p in twice if not any(w.holds(p.at) for w in run.windows)]
    found["duplicated_in_windows"] = len(twice) - len(outside)
    if outside:
        problems.append(f"{len(outside)} duplicates outside the disturbed windows")
    if came_back:
        problems.append(f"{came_back} entries came back to {here}")
    if over_one_hop or altered:
        problems.append(f"{over_one_hop} copies not one hop from {here}, {altered} altered")
    if report.epoch_overlap:
        problems.append(f"{report.epoch_overlap} writes by an older owner after a newer one")
    return report, found, problems


def _span(start: float | None, end: float | None, origin: float) -> list[float]:
    """Send times (seconds from the first fault) of the first and last of some."""
    if start is None or end is None:
        return []
    return [round(start - origin, 3), round(end - origin, 3)]


def _windows_of(run: BridgeRun, times: Iterable[float]) -> Counter[str]:
    """How many of ``times`` fall in each window ("outside": none)."""
    found: Counter[str] = Counter()
    for at in times:
        window = next((w for w in run.windows if w.holds(at)), None)
        found[window.what if window is not None else "outside"] += 1
    return found
