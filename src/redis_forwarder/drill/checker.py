"""What a drill cost, from what was sent and what arrived. Pure.

Inputs: every message the load sent (``Sent``: route, channel, sequence number, send
time) and every copy found in the sinks (``Received``: the same keys, the time the sink
wrote it when known, and the node and epoch that wrote it). Output per route
(``RouteReport``):

- sent, forwarded (distinct messages that arrived), lost (sent, never arrived) and the
  interval of send times the losses fall in;
- duplicated: copies beyond the first of a message;
- reordered: per channel, messages that arrived after a message sent later;
- epoch_overlap: a write by an older epoch after a newer epoch of the same task had
  written: two owners at once;
- recovery: the longest stretch of send time in which every message was lost or held
  up (``gap``: from the last message forwarded in time before it to the first after),
  and when, counted from the fault, the forwarded rate got back to the sent rate for
  good (``rate_back``).

A "route" here is one task's traffic (``pubsub@alpha``): recovery is per task, so a
healthy shard cannot hide a broken one's gap. Pub/sub may lose messages only inside the
*disturbed window*, from the fault until the deployment was whole again.

Sequence numbers are unique per (route, channel); "later" means a higher number.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

BUCKET = 0.25  # seconds: the resolution of rates and timelines
# A message sent just before the fault may still be in flight when it strikes.
WINDOW_SLACK = 0.5
LATE = 0.25  # seconds: a message forwarded later than this after it was sent was held up


@dataclass(frozen=True)
class Sent:
    route: str
    channel: str
    seq: int
    at: float


@dataclass(frozen=True)
class Received:
    route: str
    channel: str
    seq: int
    at: float | None  # when the sink wrote it (None: unknown, as for copied stream ids)
    node: str = ""
    epoch: int = 0
    task: str = ""  # which task wrote it (shard), for the epoch check


@dataclass
class RouteReport:
    route: str
    sent: int = 0
    forwarded: int = 0
    lost: int = 0
    lost_from: float | None = None
    lost_until: float | None = None
    duplicated: int = 0
    reordered: int = 0
    epoch_overlap: int = 0
    fault_at: float = 0.0
    recovered_at: float = 0.0
    last_before_fault: float | None = None
    first_after_fault: float | None = None
    gap: float | None = None  # seconds without a forwarded message around the fault
    rate_back: float | None = None  # seconds from the fault until the rate is back
    writers: list[str] = field(default_factory=list)  # "node@epoch", in order of first write
    # A pub/sub task's takeover from its standby's ring (issue 15), as its owner reports
    # after the drill: messages replayed, and seconds the ring could not account for.
    replayed: int = 0
    unaccounted_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check(
    sent: Iterable[Sent],
    received: Iterable[Received],
    fault_at: float,
    recovered_at: float | None = None,
) -> dict[str, RouteReport]:
    """``recovered_at``: when the deployment was whole again (default: the fault)."""
    recovered = fault_at if recovered_at is None else recovered_at
    sent_by_route: dict[str, list[Sent]] = defaultdict(list)
    for message in sent:
        sent_by_route[message.route].append(message)
    received_by_route: dict[str, list[Received]] = defaultdict(list)
    for copy in received:
        received_by_route[copy.route].append(copy)
    return {
        route: _check_route(
            route,
            sent_by_route.get(route, []),
            received_by_route.get(route, []),
            fault_at,
            recovered,
        )
        for route in sorted(sent_by_route.keys() | received_by_route.keys())
    }


def _check_route(
    route: str, sent: list[Sent], received: list[Received], fault_at: float, recovered: float
) -> RouteReport:
    report = RouteReport(route, sent=len(sent), fault_at=fault_at, recovered_at=recovered)
    # Only what was sent for sure counts: a message whose send failed may still have
    # reached the server (its reply lost), and arriving it is neither forwarded nor a
    # duplicate of anything.
    sent_keys = {(s.channel, s.seq) for s in sent}
    received = [r for r in received if (r.channel, r.seq) in sent_keys]
    copies = Counter((r.channel, r.seq) for r in received)
    report.forwarded = len(copies)
    report.duplicated = sum(count - 1 for count in copies.values())
    lost = [s for s in sent if (s.channel, s.seq) not in copies]
    report.lost = len(lost)
    if lost:
        report.lost_from = min(s.at for s in lost)
        report.lost_until = max(s.at for s in lost)
    report.reordered = _reordered(received)
    report.epoch_overlap, report.writers = _epochs(received)
    _recovery(report, sent, received, fault_at, recovered)
    return report


def _reordered(received: list[Received]) -> int:
    """Per channel, in arrival order: copies whose number is below one seen before."""
    count = 0
    highest: dict[str, int] = {}
    for copy in _arrival_order(received):
        top = highest.get(copy.channel)
        if top is not None and copy.seq < top:
            count += 1
        else:
            highest[copy.channel] = copy.seq
    return count


def _arrival_order(received: list[Received]) -> list[Received]:
    # Sinks are read in write order per channel; a known write time refines it.
    return sorted(received, key=lambda r: (r.channel, r.at if r.at is not None else 0.0))


def _epochs(received: list[Received]) -> tuple[int, list[str]]:
    """Writes by an older epoch after a newer one wrote, per task (in write order)."""
    overlap = 0
    writers: list[str] = []
    newest: dict[str, int] = {}
    timed = [r for r in received if r.at is not None and r.epoch]
    for copy in sorted(timed, key=lambda r: r.at or 0.0):
        name = f"{copy.node}@{copy.epoch}"
        if name not in writers:
            writers.append(name)
        top = newest.get(copy.task, 0)
        if copy.epoch < top:
            overlap += 1
        else:
            newest[copy.task] = copy.epoch
    return overlap, writers


def _recovery(
    report: RouteReport,
    sent: list[Sent],
    received: list[Received],
    fault_at: float,
    recovered: float,
) -> None:
    times = sorted(r.at for r in received if r.at is not None)
    before = [t for t in times if t <= fault_at]
    after = [t for t in times if t > fault_at]
    report.last_before_fault = before[-1] if before else None
    report.first_after_fault = after[0] if after else None
    if not times:
        return
    report.gap = _longest_miss(sent, received)
    if not report.lost and (report.gap or 0.0) < BUCKET:
        # Nothing lost or held up: the rate never dropped (bucket counts still jitter
        # with the sink's write times, which must not read as a slow recovery).
        report.rate_back = 0.0
        return
    sent_after = [s.at for s in sent if s.at > fault_at]
    if not after or not sent_after:
        return
    sent_rate = rates(sent_after, fault_at)
    got_rate = rates(after, fault_at)
    # The rate is back at the first bucket from which on the forwarded count keeps up
    # with the sent count of the same bucket (within a tenth, or one message).
    buckets = sorted(sent_rate)
    for index, bucket in enumerate(buckets[:-1]):  # the last bucket is partial
        if all(
            got_rate.get(b, 0) >= sent_rate[b] - max(1, sent_rate[b] // 10)
            for b in buckets[index:-1]
        ):
            report.rate_back = round(bucket * BUCKET, 4)
            return


def _longest_miss(sent: list[Sent], received: list[Received]) -> float | None:
    """The longest stretch of send time in which every message was missed (lost, or
    forwarded more than LATE after it was sent), from the last message forwarded in
    time before it to the first after it. A stretch the load sent nothing in is no gap.
    None when the misses run to the end: no recovery."""
    arrived: dict[tuple[str, int], float] = {}
    for copy in received:
        if copy.at is not None:
            key = (copy.channel, copy.seq)
            arrived[key] = min(copy.at, arrived.get(key, copy.at))
    longest = 0.0
    run_from: float | None = None
    last_ok: float | None = None
    for message in sorted(sent, key=lambda m: m.at):
        got = arrived.get((message.channel, message.seq))
        if got is None or got - message.at > LATE:
            if run_from is None:
                run_from = last_ok if last_ok is not None else message.at
            continue
        if run_from is not None:
            longest = max(longest, message.at - run_from)
            run_from = None
        last_ok = message.at
    return None if run_from is not None else round(longest, 4)


def rates(times: Iterable[float], origin: float) -> dict[int, int]:
    """Counts per BUCKET-second bucket after ``origin``."""
    counts: dict[int, int] = Counter()
    for at in times:
        counts[int((at - origin) // BUCKET)] += 1
    return dict(counts)


def guarantees_broken(
    report: RouteReport,
    *,
    may_lose: bool,
    max_gap: float | None,
    may_reorder: bool = False,
    may_duplicate: bool = False,
) -> list[str]:
    """What the report breaks. Streams may lose nothing; pub/sub may lose only inside
    the disturbed window; nobody may duplicate or write with two owners at once; pub/sub
    keeps order per channel (streams may not across a takeover: an entry claimed late
    from a frozen owner is written after newer ones, late rather than lost). A pub/sub
    route with a hot standby (issue 15) may duplicate what its dead owner wrote after
    its last watermark, and those copies come after newer ones: counted and shown."""
    broken: list[str] = []
    if report.lost and not may_lose:
        broken.append(f"{report.lost} messages lost (this route may lose none)")
    if report.lost and may_lose:
        inside = (
            report.lost_from is not None
            and report.lost_until is not None
            and report.lost_from >= report.fault_at - WINDOW_SLACK
            and report.lost_until <= report.recovered_at + WINDOW_SLACK
        )
        if not inside:
            broken.append("messages lost outside the disturbed window")
    if report.duplicated and not may_duplicate:
        broken.append(f"{report.duplicated} duplicates")
    if report.epoch_overlap:
        broken.append(f"{report.epoch_overlap} writes by an older owner after a newer one")
    if report.reordered and not may_reorder:
        broken.append(f"{report.reordered} messages out of order")
    if max_gap is not None and (report.gap is None or report.gap > max_gap):
        shown = "no recovery" if report.gap is None else f"{report.gap:.2f}s"
        broken.append(f"recovery {shown} (bound {max_gap:.1f}s)")
    return broken
