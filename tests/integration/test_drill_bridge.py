"""``drill bridge-loop`` end to end on the bridge lab (topology/bridge.toml: masters west
and east of one sentinel set, each a deployment of its own, bridged both ways by three
forwarder nodes): traffic both ways on the same channel and stream names, repeated
payloads on both sides, a kill -9 of the node running the bridge's pub/sub tasks and a
SENTINEL FAILOVER of east. The drill's own verdict must pass, and its report must show
each invariant held: nothing came back home, nothing moved after the load, streams
copied exactly once (but what east's failover erased from it, which the forwarder
counted), pub/sub lost only inside the faults' windows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.deployments import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Shared = Callable[[str], Deployment]

STEADY = 1.0  # seconds of load before, between and after the faults
BUDGET = 90.0  # the drill's own bound: the lab up apart


def test_bridge_loop_drill_keeps_its_invariants(shared_deployment: Shared) -> None:
    lab = shared_deployment("bridge").require_lab()
    started = time.monotonic()
    result = run_cli(
        "drill", "bridge-loop", "--dir", str(lab.directory), "--json", "--steady", str(STEADY),
        timeout=BUDGET,
    )  # fmt: skip
    took = time.monotonic() - started
    try:
        (outcome,) = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(
            f"no report: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        ) from None
    shown = "\n".join([*outcome.get("notes", []), *outcome["broken"]] + [
        f"{e['offset']:+.2f} {e['what']}" for e in outcome["events"]
    ])  # fmt: skip
    assert result.code == 0 and outcome["passed"], shown
    assert took < BUDGET
    bridge: dict[str, Any] = outcome["bridge"]
    assert set(outcome["routes"]) == {
        "pubsub@west>east", "pubsub@east>west", "repeated@west", "repeated@east",
        "stream@west>east", "stream@east>west",
    }  # fmt: skip
    for way, pubsub in bridge["pubsub"].items():
        assert pubsub["sent"] > 0 and pubsub["arrived"] > 0.9 * pubsub["sent"], (way, shown)
        # Home again only the dead owner's last copies, written again by the replay
        # (a few at the most: what it wrote after its last watermark).
        home = pubsub["came_back"]
        assert home == pubsub["came_back_in_standby_window"] and home <= 5, (way, shown)
        assert pubsub["lost_outside_windows"] == 0, (way, shown)
        assert pubsub["duplicated"] == pubsub["duplicated_in_standby_window"], (way, shown)
    for side, repeated in bridge["repeated"].items():
        assert repeated["expected"] > 0, side
        assert repeated["extra"] <= repeated["extra_allowed"], (side, shown)
        assert repeated["missing"] <= repeated["missing_allowed"], (side, shown)
    for way, stream in bridge["streams"].items():
        # Every entry is copied, or erased by Redis itself (east's failover, before or
        # after the copy): how many that is depends on the failover, not on us.
        accounted = stream["copied"] + stream["lost_by_redis"] + stream["lost_to_sink_failover"]
        assert stream["copied"] > 0 and accounted == stream["sent"], (way, shown)
        assert stream["duplicated"] == stream["duplicated_in_windows"], (way, shown)
        assert stream["came_back"] == 0, (way, shown)
        assert stream["over_one_hop"] == stream["altered"] == 0, (way, shown)
        # Only east's failover may erase copies, only those written into east.
        assert stream["lost"] == stream["lost_to_sink_failover"], (way, shown)
        if way == "east>west":
            assert stream["lost"] == 0, shown
    assert set(bridge["still"].values()) == {0}, shown
    assert [w["what"].split(" ")[0] for w in bridge["windows"]] == ["kill", "SENTINEL"]
    assert bridge["windows"][0]["standby"] is True  # the pub/sub tasks had a hot standby
    events = [e["what"] for e in outcome["events"]]
    assert any(e.startswith("pub/sub tasks run on") for e in events), events
    assert any(e.startswith("east's master is now") for e in events), events


def test_a_lab_without_a_bridge_is_refused(shared_deployment: Shared) -> None:
    lab = shared_deployment("standalone").require_lab()
    result = run_cli("drill", "bridge-loop", "--dir", str(lab.directory))
    assert result.code == 2, result.stderr
    assert "runs no forwarder nodes" in result.stderr and "topology/bridge.toml" in result.stderr
