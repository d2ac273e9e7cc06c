"""``drill bridge-loop``'s judgement on synthetic runs: a clean run passes; a message
that comes back home, a duplicate or a loss outside the windows, a stream entry lost or
copied twice, extra repeated payloads, anything moving after the load: each fails it,
named. And the bridge is found in a config, or its absence said. Pure."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.drill.bridge_check import (
    REPEATED,
    STREAM,
    UNIQUE,
    BridgeRun,
    Copy,
    Heard,
    Published,
    Window,
    check_bridge,
    repeated_payload,
    unique_payload,
)
from redis_forwarder.drill.bridge_loop import failover_side, summary
from redis_forwarder.drill.bridge_plan import find_bridge
from redis_forwarder.errors import UsageError
from redis_forwarder.lab.forwarders import node_config, to_toml
from redis_forwarder.lab.spec import load_spec
from tests.support.deployments import SPECS

RUN = "r1"
SIDES = ("west", "east")
COUNT = 40  # per lane and side, one every 0.5 s: t = 0 .. 19.5
KILL = Window("kill -9 fwd-1", 5.0, 7.0, standby=True)
FAILOVER = Window("SENTINEL FAILOVER east", 12.0, 14.0, failed_over="east")
STAMP = {"west": 0, "east": 1}  # entry id sequence parts, so the two sides' ids differ


def other(side: str) -> str:
    return SIDES[1 - SIDES.index(side)]


def entry(side: str, seq: int, copy: bool = False) -> str:
    return f"{1000 + seq}-{STAMP[side] + (2 if copy else 0)}"


def clean() -> BridgeRun:
    published: list[Published] = []
    heard: list[Heard] = []
    copies: list[Copy] = []
    for side in SIDES:
        for seq in range(COUNT):
            at = seq * 0.5
            unique = unique_payload(RUN, side, seq)
            published.append(Published(UNIQUE, side, seq, unique, at))
            published.append(Published(REPEATED, side, seq, repeated_payload(seq), at))
            published.append(
                Published(STREAM, side, seq, repeated_payload(seq), at, entry(side, seq))
            )
            for lane, payload in ((UNIQUE, unique), (REPEATED, repeated_payload(seq))):
                for where in SIDES:
                    for node in ("m", "r"):  # a master and its replica both hear it
                        heard.append(Heard(where, f"{where}-{node}", lane, payload, at + 0.01))
            copies.append(Copy(side, entry(side, seq), (("payload", repeated_payload(seq)),)))
            stamps = (
                ("payload", repeated_payload(seq)), ("fwd-origin", side),
                ("fwd-origin-id", entry(side, seq)), ("fwd-via", side), ("fwd-hops", "1"),
                ("node", "fwd-2"), ("epoch", "7"),
            )  # fmt: skip
            copies.append(Copy(other(side), entry(side, seq, copy=True), stamps))
    identity = {side: side for side in SIDES}
    still = {"pub/sub heard on west": 0, "stream entries on east": 0}
    return BridgeRun(RUN, SIDES, identity, published, heard, copies, [KILL, FAILOVER], still)


def without(run: BridgeRun, drop: Heard | Copy) -> BridgeRun:
    """``run`` less one record equal to ``drop`` (two sides' repeats can be equal)."""
    heard, copies = list(run.heard), list(run.copies)
    if isinstance(drop, Heard):
        heard.remove(drop)
    if isinstance(drop, Copy):
        copies.remove(drop)
    return replace(run, heard=heard, copies=copies)


def heard_on(run: BridgeRun, side: str, lane: str, payload: str) -> list[Heard]:
    return [h for h in run.heard if (h.side, h.lane, h.payload) == (side, lane, payload)]


def test_a_clean_run_passes_and_says_so() -> None:
    verdict = check_bridge(clean())
    assert verdict.broken == []
    way = verdict.findings["pubsub"]["west>east"]
    assert way["sent"] == way["arrived"] == COUNT and way["came_back"] == 0
    assert verdict.routes["pubsub@west>east"].duplicated == 0  # two nodes heard it once
    assert verdict.findings["repeated"]["east"]["expected"] == 2 * COUNT
    assert verdict.findings["repeated"]["east"]["extra"] == 0
    stream = verdict.findings["streams"]["east>west"]
    assert stream["copied"] == COUNT and stream["lost"] == stream["duplicated"] == 0
    findings = {"windows": [], "still_seconds": 3.0, **verdict.findings}
    assert summary(findings)[-1] == "after the load: nothing moved in 3s"


def test_a_message_heard_twice_at_home_came_back() -> None:
    run = clean()
    home = heard_on(run, "west", UNIQUE, unique_payload(RUN, "west", 30))[0]
    run.heard.append(replace(home, at=home.at + 0.2))  # one node heard it twice
    verdict = check_bridge(run)
    assert verdict.findings["pubsub"]["west>east"]["came_back"] == 1
    assert verdict.broken == ["pubsub@west>east: 1 copies came back to west, where they "
                              "were published, outside a standby's takeover window"]  # fmt: skip


def test_a_copy_home_again_in_a_standby_takeover_is_counted_not_broken() -> None:
    """The dead owner's last copies are written again by the standby's replay: one may
    go home once (docs/bridging.md, Limits); inside the kill's window it is counted."""
    run = clean()
    home = heard_on(run, "west", UNIQUE, unique_payload(RUN, "west", 11))[0]  # t = 5.5
    run.heard.append(replace(home, at=home.at + 0.2))
    verdict = check_bridge(run)
    way = verdict.findings["pubsub"]["west>east"]
    assert way["came_back"] == way["came_back_in_standby_window"] == 1
    assert verdict.broken == []


def test_losses_count_per_window_and_break_outside() -> None:
    run = clean()
    for seq in (11, 25, 35):  # t = 5.5 (the kill), 12.5 (the failover), 17.5 (neither)
        for copy in heard_on(run, "east", UNIQUE, unique_payload(RUN, "west", seq)):
            run = without(run, copy)
    verdict = check_bridge(run)
    way = verdict.findings["pubsub"]["west>east"]
    assert way["lost_in_windows"] == {"kill -9 fwd-1": 1, "SENTINEL FAILOVER east": 1}
    assert way["lost_outside_windows"] == 1 and way["lost_outside_sent_at"] == [12.5]
    assert verdict.broken == ["pubsub@west>east: 1 messages lost outside the disturbed windows"]


def test_duplicates_are_allowed_only_in_a_standby_takeover() -> None:
    run = clean()
    for seq in (11, 35):  # inside the kill's window, and outside every window
        run.heard.append(heard_on(run, "east", UNIQUE, unique_payload(RUN, "west", seq))[0])
    verdict = check_bridge(run)
    assert verdict.findings["pubsub"]["west>east"]["duplicated_in_standby_window"] == 1
    assert verdict.broken == [
        "pubsub@west>east: 1 messages duplicated outside a standby's takeover window"
    ]


def test_repeated_payloads_are_compared_as_multisets() -> None:
    # Which of identical copies is extra cannot be told: a standby's takeover window
    # allows as many as the other side sent in it (7 here), no window none.
    run = clean()
    run.heard.append(Heard("east", "east-m", REPEATED, "p3", 18.0))  # one p3 too many
    found = check_bridge(run).findings["repeated"]["east"]
    assert (found["extra"], found["extra_allowed"]) == (1, 7)
    verdict = check_bridge(replace(run, windows=[FAILOVER]))
    assert verdict.broken == [
        "repeated@east: 1 copies more than both sides sent (echoes or duplicates; 0 "
        "allowed, sent inside a standby's takeover window)"
    ]
    run = clean()
    for copy in heard_on(run, "east", REPEATED, "p3")[:2]:  # one p3 heard by neither node
        run = without(run, copy)
    assert check_bridge(run).findings["repeated"]["east"]["missing"] == 1
    assert check_bridge(run).broken == []  # fewer than were sent in the windows
    (problem,) = check_bridge(replace(run, windows=[])).broken
    assert problem.startswith("repeated@east: 1 messages missing, more than the 0 sent")


def test_a_stream_entry_lost_or_copied_twice_breaks_the_drill() -> None:
    run = clean()
    lost = next(c for c in run.copies if c.side == "west" and c.get("fwd-origin-id") == "1030-1")
    twice = next(c for c in run.copies if c.side == "east" and c.get("fwd-origin-id") == "1030-0")
    run = without(run, lost)
    run.copies.append(replace(twice, entry_id="1031-9"))
    verdict = check_bridge(run)
    assert verdict.findings["streams"]["east>west"]["lost"] == 1
    assert verdict.findings["streams"]["west>east"]["duplicated"] == 1
    assert verdict.findings["streams"]["west>east"]["duplicated_sent_at"] == [10.0]  # from the kill
    assert sorted(verdict.broken) == [
        "stream@east>west: 1 entries lost (a stream bridge may lose none but what the "
        "failover of its sink erased)",
        "stream@west>east: 1 duplicates outside the disturbed windows",
    ]
    inside = next(c for c in run.copies if c.side == "east" and c.get("fwd-origin-id") == "1011-0")
    run.copies.append(replace(inside, entry_id="1031-8"))  # sent at t = 5.5: the kill
    found = check_bridge(run).findings["streams"]["west>east"]
    assert found["duplicated"] == 2 and found["duplicated_in_windows"] == 1


def test_what_redis_itself_lost_is_reported_apart() -> None:
    run = clean()
    # Written into east while its master failed over (t = 12.5): erased by the resync.
    erased = next(c for c in run.copies if c.side == "east" and c.get("fwd-origin-id") == "1025-0")
    # XADDed on east and gone from it: replication's loss (its copy may exist or not).
    gone = next(c for c in run.copies if c.side == "east" and c.entry_id == "1026-1")
    run = replace(without(without(run, erased), gone), counted={"west>east": 1})
    verdict = check_bridge(run)
    assert verdict.broken == []
    assert verdict.findings["streams"]["west>east"]["lost_to_sink_failover"] == 1
    assert verdict.findings["streams"]["west>east"]["counted_by_forwarder"] == 1
    assert verdict.findings["streams"]["east>west"]["lost_by_redis"] == 1
    assert verdict.findings["streams"]["east>west"]["unattributed"] == 1


def test_a_stream_entry_home_again_or_over_one_hop_breaks_the_drill() -> None:
    run = clean()
    copy = next(c for c in run.copies if c.side == "east" and c.get("fwd-origin") == "west")
    home = Copy("west", "1040-7", copy.fields)  # west's entry back on west
    hopped = Copy("east", copy.entry_id, tuple((k, "2" if k == "fwd-hops" else v)
                                              for k, v in copy.fields))  # fmt: skip
    run = without(run, copy)
    run.copies += [home, hopped]
    broken = check_bridge(run).broken
    assert "stream@west>east: 1 entries came back to west" in broken
    assert "stream@west>east: 1 copies not one hop from west, 0 altered" in broken


def test_anything_moving_after_the_load_is_a_loop() -> None:
    run = replace(clean(), still={"pub/sub heard on east": 250, "stream entries on east": 0})
    (problem,) = check_bridge(run).broken
    assert problem.startswith("still moving after the load") and "heard on east +250" in problem


def bridge_config(change: tuple[str, str] | None = None) -> ForwarderConfig:
    spec = load_spec(SPECS / "bridge.toml")
    assert spec.forwarders is not None
    text = to_toml(node_config(spec, spec.forwarders.nodes[0]))
    if change is not None:
        assert change[0] in text
        text = text.replace(*change)
    return ForwarderConfig.model_validate(tomllib.loads(text))


def test_the_bridge_is_found_in_the_shipped_spec() -> None:
    bridge = find_bridge(bridge_config())
    assert [s.name for s in bridge.sides] == ["source", "east"]  # in the config
    assert [s.identity for s in bridge.sides] == ["west", "east"]  # as bridges call them
    assert [s.master for s in bridge.sides] == ["west", "east"]
    assert bridge.channels == ("bridge.repeated", "bridge.unique")
    assert bridge.stream == "bridge-stream"
    assert failover_side(bridge).name == "east"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # one direction writes the channels under a prefix: not the same names both ways
        (('channel = "{channel}", echo = "suppress"', 'channel = "{origin}.{channel}"'),
         "no pub/sub"),
        # stream routes without origins (and so into other names, or the config refuses)
        (('to = { stream = "{channel}", origin = true, node_fields = true }',
          'to = { stream = "copy.{channel}" }'), "no two deployments with routes both ways"),
        (('masters = ["east"]', 'masters = ["east", "west2"]'), "names 2 masters"),
    ],
)  # fmt: skip
def test_a_lab_without_a_two_way_bridge_is_refused(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        find_bridge(bridge_config(change))
    message = str(caught.value)
    assert message.startswith("drill bridge-loop needs a two-way bridge and the lab has none")
    assert expected in message and "topology/bridge.toml" in message
